//! Every topic a configuration uses, as wire names (prefix applied), for `intake topics create`.

use intake_core::config::BusConfig;

/// Every topic `config` uses: the per-service announce topics of `services`, then announce,
/// validation, validation.dlq, available, payload-status and payload-status.dlq, each with the
/// configured prefix. Duplicates (a template that maps two services to one name) appear once.
pub fn topic_names(config: &BusConfig, services: &[String]) -> Vec<String> {
    let t = &config.topics;
    let shared = [
        &t.announce,
        &t.validation,
        &t.validation_dlq,
        &t.available,
        &t.payload_status,
        &t.payload_status_dlq,
    ];
    let mut names: Vec<String> = Vec::with_capacity(services.len() + shared.len());
    let candidates = services
        .iter()
        .map(|s| config.service_topic(s))
        .chain(shared.iter().map(|name| config.topic(name)));
    for name in candidates {
        if !names.contains(&name) {
            names.push(name);
        }
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;
    use intake_core::config::EnvMap;

    fn config(env: &[(&str, &str)]) -> BusConfig {
        let env: EnvMap = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        BusConfig::from_env(&env, std::path::Path::new("/d")).unwrap()
    }

    #[test]
    fn lists_every_topic_with_the_prefix() {
        let c = config(&[("KAFKA_TOPIC_PREFIX", "platform-mq-stage.")]);
        let names = topic_names(&c, &["advisor".to_string(), "compliance".to_string()]);
        assert_eq!(
            names,
            [
                "platform-mq-stage.platform.upload.advisor",
                "platform-mq-stage.platform.upload.compliance",
                "platform-mq-stage.platform.upload.announce",
                "platform-mq-stage.platform.upload.validation",
                "platform-mq-stage.platform.upload.validation.dlq",
                "platform-mq-stage.platform.upload.available",
                "platform-mq-stage.platform.payload-status",
                "platform-mq-stage.platform.payload-status.dlq",
            ]
        );
    }

    #[test]
    fn follows_renamed_topics_and_drops_duplicates() {
        let c = config(&[
            ("TOPIC_SERVICE_TEMPLATE", "uploads.{service}"),
            ("TOPIC_AVAILABLE", "uploads.ready"),
            ("TOPIC_ANNOUNCE", "uploads.advisor"),
        ]);
        let names = topic_names(&c, &["advisor".to_string()]);
        assert_eq!(names[0], "uploads.advisor");
        assert_eq!(names.iter().filter(|n| *n == "uploads.advisor").count(), 1);
        assert!(names.contains(&"uploads.ready".to_string()));
        assert_eq!(names.len(), 6);
    }
}
