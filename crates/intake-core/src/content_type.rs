//! Content type → service and category, as ingress.md defines it.

use std::sync::LazyLock;

use regex::Regex;

/// Names that can never be a service: with the default topic names, their per-service announce
/// topic (`platform.upload.<service>`) is one intake itself produces or consumes, so a validator
/// subscribed to it would consume intake's own messages (or its own verdicts, forever).
/// `INGRESS_VALID_SERVICES` refuses them, and `Topics::service_collision` checks the configured topic
/// names as well.
pub const RESERVED_SERVICES: [&str; 4] = ["validation", "available", "announce", "payload-status"];

/// The default `INGRESS_VALID_SERVICES`.
pub const DEFAULT_VALID_SERVICES: [&str; 27] = [
    "advisor",
    "testareno",
    "hccm",
    "compliance",
    "qpc",
    "buckit",
    "openshift",
    "ansible",
    "rhv",
    "tower",
    "leapp-reporting",
    "xavier",
    "mkt",
    "playbook",
    "playbook-sat",
    "resource-optimization",
    "malware-detection",
    "pinakes",
    "assisted-installer",
    "runtimes-java-general",
    "tasks",
    "automation-hub",
    "aap-billing-controller",
    "aap-event-driven-ansible",
    "ols",
    "ocm-assisted-chat",
    "rhos-lightspeed",
];

static VND: LazyLock<Regex> = LazyLock::new(|| {
    #[allow(
        clippy::expect_used,
        reason = "a constant pattern, checked by the tests below"
    )]
    Regex::new(r"^application/vnd\.redhat\.([a-z0-9-]+)\.([a-z0-9-]+)").expect("valid regex")
});

/// The service and category a content type names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceType {
    pub service: String,
    pub category: String,
}

/// Why a content type picks no usable service (all are 415).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ContentTypeError {
    #[error("content type {0:?} is not supported; expected application/vnd.redhat.<service>.<category>+tgz")]
    Unrecognised(String),
    #[error("service {0:?} is not supported by this ingress")]
    ServiceNotAllowed(String),
}

/// Parses a file part's content type into service and category (no allow-list check).
pub fn parse(content_type: &str) -> Result<ServiceType, ContentTypeError> {
    let lowered = content_type.trim().to_ascii_lowercase();
    let normalised: String = lowered
        .split(';')
        .map(str::trim)
        .collect::<Vec<_>>()
        .join("; ");
    let legacy = match normalised.as_str() {
        "application/x-gzip; charset=binary"
        | "application/gzip"
        | "application/gzip; charset=binary" => Some(("advisor", "upload")),
        "application/vnd.redhat.openshift.periodic" => Some(("buckit", "openshift")),
        _ => None,
    };
    if let Some((service, category)) = legacy {
        return Ok(ServiceType {
            service: service.into(),
            category: category.into(),
        });
    }
    let caps = VND
        .captures(&lowered)
        .ok_or_else(|| ContentTypeError::Unrecognised(content_type.to_owned()))?;
    Ok(ServiceType {
        service: caps[1].to_owned(),
        category: caps[2].to_owned(),
    })
}

/// Parses and checks against the allow-list; reserved names are refused even when listed.
pub fn resolve(content_type: &str, allowed: &[String]) -> Result<ServiceType, ContentTypeError> {
    let st = parse(content_type)?;
    if RESERVED_SERVICES.contains(&st.service.as_str()) || !allowed.iter().any(|s| s == &st.service)
    {
        return Err(ContentTypeError::ServiceNotAllowed(st.service));
    }
    Ok(st)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn defaults() -> Vec<String> {
        DEFAULT_VALID_SERVICES
            .iter()
            .map(|s| s.to_string())
            .collect()
    }

    #[test]
    fn vendor_types() {
        let st = parse("application/vnd.redhat.advisor.payload+tgz").unwrap();
        assert_eq!(
            (st.service.as_str(), st.category.as_str()),
            ("advisor", "payload")
        );
        let st = parse("application/vnd.redhat.s0m3-s3rv1c3.s0m3-4pp+tgz").unwrap();
        assert_eq!(st.service, "s0m3-s3rv1c3");
        assert!(resolve(
            "application/vnd.redhat.s0m3-s3rv1c3.s0m3-4pp+tgz",
            &defaults()
        )
        .is_err());
        let st = resolve(
            "Application/VND.redhat.testareno.something+tgz",
            &defaults(),
        )
        .unwrap();
        assert_eq!(st.category, "something");
    }

    #[test]
    fn legacy_map() {
        for ct in [
            "application/x-gzip; charset=binary",
            "application/x-gzip;charset=binary",
            "application/gzip",
        ] {
            assert_eq!(parse(ct).unwrap().service, "advisor", "{ct}");
        }
        let st = parse("application/vnd.redhat.openshift.periodic").unwrap();
        assert_eq!(
            (st.service.as_str(), st.category.as_str()),
            ("buckit", "openshift")
        );
    }

    #[test]
    fn the_415_examples() {
        for ct in [
            "application/vnd.redhat.compliance+tgz",
            "application/vnd.redhat.my_app.x+zip",
            "text/vnd.redhat.a.b",
            "x-application/vnd.redhat.a.b",
            "application/json",
            "text/plain",
        ] {
            assert!(
                matches!(parse(ct), Err(ContentTypeError::Unrecognised(_))),
                "{ct}"
            );
        }
    }

    #[test]
    fn reserved_services_are_refused_even_when_listed() {
        let allowed = vec![
            "validation".to_string(),
            "announce".into(),
            "available".into(),
        ];
        for s in ["validation", "announce", "available"] {
            let ct = format!("application/vnd.redhat.{s}.x+tgz");
            assert_eq!(
                resolve(&ct, &allowed),
                Err(ContentTypeError::ServiceNotAllowed(s.into()))
            );
        }
    }
}
