//! `intake config`: the settings each part would run with, read from the environment exactly as at
//! start-up (defaults filled in), with secrets masked. A bad variable fails as start-up would.

use crate::components::Settings;

/// Variables whose values are never printed, only whether they are set.
const SECRETS: [&str; 3] = [
    "KAFKA_SASL_PASSWORD",
    "AWS_SECRET_ACCESS_KEY",
    "STORAGE_URL_SIGNING_KEY",
];

pub fn run(settings: &Settings) -> anyhow::Result<()> {
    let ingress = settings.ingress()?;
    let storage = settings.storage()?;
    let bus = settings.bus()?;
    let tracker = settings.tracker()?;
    let validator = settings.validator()?;
    match settings.env.get(intake_core::config::clowder::ACG_CONFIG) {
        Some(path) if !path.trim().is_empty() => {
            println!(
                "clowder app-config (ACG_CONFIG): {path}, under variables set in the environment"
            );
        }
        _ => println!("clowder app-config (ACG_CONFIG): not set"),
    }
    println!("general: {:#?}", settings.general);
    println!("ingress: {ingress:#?}");
    println!("storage: {storage:#?}");
    println!("bus: {bus:#?}");
    println!("tracker: {tracker:#?}");
    println!("tracker database: {}", mask_password(&tracker.database_url));
    println!("validator: {validator:#?}");
    println!("secrets:");
    for name in SECRETS {
        let set = settings.env.get(name).is_some_and(|v| !v.trim().is_empty());
        println!("  {name}: {}", if set { "set (hidden)" } else { "not set" });
    }
    Ok(())
}

/// `scheme://user:password@host/…` → `scheme://user:****@host/…`.
fn mask_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let Some((credentials, host)) = rest.rsplit_once('@') else {
        return url.to_owned();
    };
    match credentials.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:****@{host}"),
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::mask_password;

    #[test]
    fn passwords_in_urls_are_masked() {
        assert_eq!(
            mask_password("postgres://u:p@ss@db:5432/t"),
            "postgres://u:****@db:5432/t"
        );
        assert_eq!(
            mask_password("sqlite://./data/t.db"),
            "sqlite://./data/t.db"
        );
        assert_eq!(mask_password("postgres://u@db/t"), "postgres://u@db/t");
    }
}
