//! Names and generated identifiers: Kafka's topic-name rules (`Topic.validate`), the '.'/'_'
//! collision rule, internal topics, and the cluster id. Pure functions, no I/O.

use uuid::Uuid;

use super::error::MetadataError;

/// Kafka's limit: a partition directory `<topic>-<partition>` must fit a 255-byte file name.
pub const TOPIC_NAME_LENGTH_MAX: usize = 249;

/// The metadata log's own name, as KRaft's; its directory is `<data_dir>/__cluster_metadata-0`,
/// so no user topic may take the name.
pub const METADATA_TOPIC_NAME: &str = "__cluster_metadata";

/// Length of a cluster id: 16 bytes in unpadded base64, as Kafka prints its `Uuid`s.
pub const CLUSTER_ID_LENGTH: usize = 22;

/// Checks a topic name exactly as Kafka's `Topic.validate` does, with Kafka's messages.
pub fn validate_topic_name(name: &str) -> Result<(), MetadataError> {
    if name.is_empty() {
        return Err(MetadataError::InvalidTopic(
            "Topic name is illegal, it can't be empty".into(),
        ));
    }
    if name == "." || name == ".." {
        return Err(MetadataError::InvalidTopic(
            "Topic name cannot be \".\" or \"..\"".into(),
        ));
    }
    if name.chars().count() > TOPIC_NAME_LENGTH_MAX {
        return Err(MetadataError::InvalidTopic(format!(
            "Topic name is illegal, it can't be longer than {TOPIC_NAME_LENGTH_MAX} characters, \
             topic name: {name}"
        )));
    }
    let legal = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    if !name.chars().all(legal) {
        return Err(MetadataError::InvalidTopic(format!(
            "Topic name \"{name}\" is illegal, it contains a character other than ASCII \
             alphanumerics, '.', '_' and '-'"
        )));
    }
    Ok(())
}

/// Kafka refuses two topics whose names differ only by '.' versus '_': metric names would
/// clash.
pub fn names_collide(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .all(|(x, y)| x == y || (matches!(x, b'.' | b'_') && matches!(y, b'.' | b'_')))
}

/// Topics whose name starts with `__` belong to the broker (`__consumer_offsets`,
/// `__transaction_state`).
pub fn is_internal_topic(name: &str) -> bool {
    name.starts_with("__")
}

/// A fresh cluster id as Kafka makes one (`Uuid.randomUuid().toString()`): 16 random bytes in
/// URL-safe base64 without padding, never starting with '-' (command lines would read it as a
/// flag).
pub fn generate_cluster_id() -> String {
    loop {
        let id = base64_url_unpadded(Uuid::new_v4().as_bytes());
        if !id.starts_with('-') {
            debug_assert_eq!(id.len(), CLUSTER_ID_LENGTH);
            return id;
        }
    }
}

/// A cluster id read from disk must look like one this module made (or Kafka would make).
pub fn is_valid_cluster_id(id: &str) -> bool {
    id.len() == CLUSTER_ID_LENGTH
        && !id.starts_with('-')
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// A fresh topic id: random v4, so never nil nor Kafka's reserved metadata topic id (0, 1).
pub fn generate_topic_id() -> Uuid {
    Uuid::new_v4()
}

fn base64_url_unpadded(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        let symbols = chunk.len() + 1;
        for i in 0..symbols {
            out.push(char::from(ALPHABET[(n >> (18 - 6 * i) & 0x3f) as usize]));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_names_follow_kafka_rules() {
        for good in ["a", "orders", "Orders.v2_x-1", "__consumer_offsets", "..."] {
            assert!(validate_topic_name(good).is_ok(), "{good}");
        }
        let longest = "x".repeat(TOPIC_NAME_LENGTH_MAX);
        assert!(validate_topic_name(&longest).is_ok());
        for bad in ["", ".", "..", "a b", "a/b", "ä", "a:b", "tab\t", "a,b"] {
            let error = validate_topic_name(bad).unwrap_err();
            assert_eq!(error.kafka_code(), 17, "{bad}");
        }
        let error = validate_topic_name(&format!("{longest}x")).unwrap_err();
        assert!(error.to_string().contains("longer than 249"), "{error}");
        assert_eq!(
            validate_topic_name("a b").unwrap_err().to_string(),
            "Topic name \"a b\" is illegal, it contains a character other than ASCII \
             alphanumerics, '.', '_' and '-'"
        );
        assert_eq!(
            validate_topic_name("").unwrap_err().to_string(),
            "Topic name is illegal, it can't be empty"
        );
    }

    #[test]
    fn dot_and_underscore_collide() {
        assert!(names_collide("a.b", "a_b"));
        assert!(names_collide("a.b", "a.b"));
        assert!(names_collide("x_.y", "x._y"));
        assert!(!names_collide("a.b", "a-b"));
        assert!(!names_collide("a.b", "a.bc"));
    }

    #[test]
    fn internal_topics_start_with_two_underscores() {
        assert!(is_internal_topic("__consumer_offsets"));
        assert!(!is_internal_topic("_private"));
    }

    #[test]
    fn cluster_ids_look_like_kafkas() {
        for _ in 0..200 {
            let id = generate_cluster_id();
            assert_eq!(id.len(), CLUSTER_ID_LENGTH);
            assert!(is_valid_cluster_id(&id), "{id}");
        }
        assert_ne!(generate_cluster_id(), generate_cluster_id());
        assert!(!is_valid_cluster_id("short"));
        assert!(!is_valid_cluster_id("-AAAAAAAAAAAAAAAAAAAAA"));
    }

    #[test]
    fn base64_matches_known_vectors() {
        // RFC 4648 test vectors, URL-safe alphabet, no padding.
        assert_eq!(base64_url_unpadded(b""), "");
        assert_eq!(base64_url_unpadded(b"f"), "Zg");
        assert_eq!(base64_url_unpadded(b"fo"), "Zm8");
        assert_eq!(base64_url_unpadded(b"foo"), "Zm9v");
        assert_eq!(base64_url_unpadded(b"foobar"), "Zm9vYmFy");
        assert_eq!(base64_url_unpadded(&[0xfb, 0xff]), "-_8");
        assert_eq!(base64_url_unpadded(&[0u8; 16]), "AAAAAAAAAAAAAAAAAAAAAA");
    }

    #[test]
    fn topic_ids_are_never_nil() {
        for _ in 0..100 {
            let id = generate_topic_id();
            assert!(!id.is_nil());
            assert_ne!(id, Uuid::from_u128(1));
        }
    }
}
