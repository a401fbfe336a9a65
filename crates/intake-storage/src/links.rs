//! The shapes of the download links the drivers issue, as consumers check them (storage.md,
//! "Download URLs"). The pipeline's default `allowed_urls` are these patterns, and the contract
//! suite checks that every driver's links pass them.

/// The S3 presigned-URL pattern of the stock CCX downloader (ccx-messaging 4.6.0,
/// `HTTPDownloader.HTTP_RE`), unchanged: AWS hosts, path-style or `<bucket>.s3.amazonaws.com`, and a
/// query that starts with `X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=`.
pub const S3_PRESIGNED_PATTERN: &str = r"^(?:https://[^/]+\.s3\.amazonaws\.com/[0-9a-zA-Z/\-]+|https://s3\.[0-9a-zA-Z\-]+\.amazonaws\.com/[0-9a-zA-Z\-]+/[0-9a-zA-Z/\-]+)\?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=[^/]+$";

/// The query every presigned link starts with.
pub const S3_PRESIGNED_QUERY_START: &str = "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=";

/// The localdisk download URL pattern for an ingress public URL.
pub fn localdisk_url_pattern(public_url: &str) -> String {
    format!(
        r"^{}/download/[A-Za-z0-9-]{{1,64}}\?expires=[0-9]{{1,20}}&signature=[0-9a-f]{{64}}$",
        regex::escape(public_url.trim_end_matches('/'))
    )
}

/// `url` with its scheme and authority replaced by `origin` (for example an AWS host, to check a
/// link issued for a local S3 server against [`S3_PRESIGNED_PATTERN`], host part aside). `None`
/// when `url` has no `scheme://authority`.
pub fn with_origin(url: &str, origin: &str) -> Option<String> {
    let (_, rest) = url.split_once("://")?;
    let path_start = rest.find(['/', '?']).unwrap_or(rest.len());
    Some(format!(
        "{}{}",
        origin.trim_end_matches('/'),
        &rest[path_start..]
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_s3_pattern_takes_the_upstream_shape_only() {
        let re = regex::Regex::new(S3_PRESIGNED_PATTERN).expect("pattern");
        let q = "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKID%2F20260101%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Date=20260101T000000Z&X-Amz-Expires=86400&X-Amz-SignedHeaders=host&X-Amz-Signature=00ff";
        for ok in [
            format!("https://s3.us-east-1.amazonaws.com/insights-upload-perm-test/abc123?{q}"),
            format!("https://insights-upload-perm-test.s3.amazonaws.com/abc123?{q}"),
        ] {
            assert!(re.is_match(&ok), "{ok}");
        }
        for bad in [
            format!("https://s3.us-east-1.amazonaws.com/insights-upload-perm-test/abc123?x-id=GetObject&{q}"),
            format!("http://s3.us-east-1.amazonaws.com/insights-upload-perm-test/abc123?{q}"),
            format!("https://s3.us-east-1.amazonaws.com/insights-upload-perm-test/abc123?{q}&x=a/b"),
        ] {
            assert!(!re.is_match(&bad), "{bad}");
        }
    }

    #[test]
    fn with_origin_keeps_path_and_query() {
        assert_eq!(
            with_origin(
                "http://127.0.0.1:9000/b/k?X=1",
                "https://s3.us-east-1.amazonaws.com"
            )
            .as_deref(),
            Some("https://s3.us-east-1.amazonaws.com/b/k?X=1")
        );
        assert_eq!(with_origin("no-scheme/b", "https://h"), None);
    }
}
