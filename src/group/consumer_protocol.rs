//! Reading the "consumer" embedded protocol that Kafka clients put in JoinGroup metadata and
//! SyncGroup assignments, for what the broker itself must know: which topics a group
//! subscribes to (OffsetDelete) and which partitions a member owns (lag). The broker never
//! rewrites these bytes; a client's own layout passes through untouched.

use bytes::Buf;

/// The topics of a subscription (any version: they all start with version and topics).
pub fn subscription_topics(metadata: &[u8]) -> Option<Vec<String>> {
    let mut buf = metadata;
    let _version = read_i16(&mut buf)?;
    read_strings(&mut buf)
}

/// The (topic, partitions) an assignment gives a member.
pub fn assignment_partitions(assignment: &[u8]) -> Option<Vec<(String, Vec<i32>)>> {
    let mut buf = assignment;
    if buf.is_empty() {
        return Some(Vec::new());
    }
    let _version = read_i16(&mut buf)?;
    let count = read_count(&mut buf)?;
    let mut topics = Vec::new();
    for _ in 0..count {
        let topic = read_string(&mut buf)?;
        let partition_count = read_count(&mut buf)?;
        if buf.remaining() < partition_count.checked_mul(4)? {
            return None;
        }
        let partitions = (0..partition_count).map(|_| buf.get_i32()).collect();
        topics.push((topic, partitions));
    }
    Some(topics)
}

fn read_i16(buf: &mut &[u8]) -> Option<i16> {
    (buf.remaining() >= 2).then(|| buf.get_i16())
}

/// An array length; -1 (null) reads as empty.
fn read_count(buf: &mut &[u8]) -> Option<usize> {
    if buf.remaining() < 4 {
        return None;
    }
    let count = buf.get_i32();
    if count < 0 {
        return Some(0);
    }
    let count = count as usize;
    // Each element takes at least two bytes; a larger count is a lie.
    (count <= buf.remaining() / 2 + 1).then_some(count)
}

fn read_string(buf: &mut &[u8]) -> Option<String> {
    let length = usize::try_from(read_i16(buf)?).ok()?;
    if buf.remaining() < length {
        return None;
    }
    let text = std::str::from_utf8(&buf[..length]).ok()?.to_string();
    buf.advance(length);
    Some(text)
}

fn read_strings(buf: &mut &[u8]) -> Option<Vec<String>> {
    let count = read_count(buf)?;
    (0..count).map(|_| read_string(buf)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BufMut;

    #[test]
    fn reads_what_clients_send() {
        let mut subscription = Vec::new();
        subscription.put_i16(1);
        subscription.put_i32(2);
        for topic in ["orders", "payments"] {
            subscription.put_i16(topic.len() as i16);
            subscription.put_slice(topic.as_bytes());
        }
        subscription.put_i32(-1); // user data
        assert_eq!(
            subscription_topics(&subscription),
            Some(vec!["orders".to_string(), "payments".to_string()])
        );

        let mut assignment = Vec::new();
        assignment.put_i16(0);
        assignment.put_i32(1);
        assignment.put_i16(6);
        assignment.put_slice(b"orders");
        assignment.put_i32(2);
        assignment.put_i32(0);
        assignment.put_i32(3);
        assignment.put_i32(-1);
        assert_eq!(
            assignment_partitions(&assignment),
            Some(vec![("orders".to_string(), vec![0, 3])])
        );
    }

    #[test]
    fn garbage_is_refused_not_panicked_on() {
        assert_eq!(subscription_topics(&[0, 1, 0x7f, 0xff, 0xff, 0xff]), None);
        assert_eq!(
            assignment_partitions(&[0, 0, 0, 0, 0, 1, 0, 1, b'a', 0x7f]),
            None
        );
    }
}
