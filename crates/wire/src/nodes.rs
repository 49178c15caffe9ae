//! What the nodes of one deployment tell each other over NATS core pub/sub (issue 13).
//!
//! Only hints: "look again". Every fact a hint points at is already committed to the shared
//! database, so a hint lost (NATS down, a node restarting) costs latency, never a message:
//! nodes fall back to polling while the bus is down and wake every socket once it is back.

use serde::{Deserialize, Serialize};

/// The version of [`NodeEvent`] this build speaks; a node ignores events of other versions.
pub const NODE_EVENT_VERSION: u32 = 1;

/// Largest event a node decodes (a wake of every device of a 1,000-member chat is ~35 KiB).
pub const MAX_NODE_EVENT_BYTES: usize = 1 << 20;

/// The subject a deployment's nodes publish on: one per database (its random instance id),
/// so deployments sharing a NATS server never hear each other.
pub fn node_subject(instance_id: &str) -> String {
    format!("vellum.v{NODE_EVENT_VERSION}.{instance_id}.nodes")
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeEvent {
    pub v: u32,
    /// The publishing node (random per process): a node skips its own events.
    pub node: String,
    #[serde(flatten)]
    pub hint: NodeHint,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "hint", rename_all = "snake_case")]
pub enum NodeHint {
    /// Something was appended for these devices: wake their sockets. Devices are named by
    /// tags the deployment's nodes derive from a key they share, never by their ids.
    Wake { tags: Vec<String> },
    /// An org-wide change (a legal hold): wake every socket.
    WakeAll,
    /// The key directory grew to `size` entries: catch up before serving it.
    Directory { size: u64 },
}

#[derive(Debug, thiserror::Error)]
pub enum NodeEventError {
    #[error("a node event of {0} bytes is larger than {MAX_NODE_EVENT_BYTES}")]
    TooLarge(usize),
    #[error("a node event of version {0}, this node speaks {NODE_EVENT_VERSION}")]
    Version(u32),
    #[error("a malformed node event: {0}")]
    Malformed(#[from] serde_json::Error),
}

impl NodeEvent {
    pub fn new(node: &str, hint: NodeHint) -> Self {
        Self {
            v: NODE_EVENT_VERSION,
            node: node.to_owned(),
            hint,
        }
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a node event serialises")
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, NodeEventError> {
        if bytes.len() > MAX_NODE_EVENT_BYTES {
            return Err(NodeEventError::TooLarge(bytes.len()));
        }
        #[derive(Deserialize)]
        struct Versioned {
            v: u32,
        }
        let Versioned { v } = serde_json::from_slice(bytes)?;
        if v != NODE_EVENT_VERSION {
            return Err(NodeEventError::Version(v));
        }
        Ok(serde_json::from_slice(bytes)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Golden bytes: nodes of different builds in one deployment must keep understanding
    /// each other, so these change only with a new version.
    #[test]
    fn issue_13_node_events_have_fixed_bytes() {
        let cases = [
            (
                NodeEvent::new(
                    "n1",
                    NodeHint::Wake {
                        tags: vec!["t1".into(), "t2".into()],
                    },
                ),
                r#"{"v":1,"node":"n1","hint":"wake","tags":["t1","t2"]}"#,
            ),
            (
                NodeEvent::new("n1", NodeHint::WakeAll),
                r#"{"v":1,"node":"n1","hint":"wake_all"}"#,
            ),
            (
                NodeEvent::new("n2", NodeHint::Directory { size: 7 }),
                r#"{"v":1,"node":"n2","hint":"directory","size":7}"#,
            ),
        ];
        for (event, golden) in cases {
            assert_eq!(String::from_utf8(event.to_bytes()).unwrap(), golden);
            assert_eq!(NodeEvent::decode(golden.as_bytes()).unwrap(), event);
        }
        assert_eq!(node_subject("ab12"), "vellum.v1.ab12.nodes");
    }

    #[test]
    fn issue_13_bad_node_events_are_refused() {
        for bad in [
            &b""[..],
            b"null",
            b"{\"v\":1}",
            b"{\"v\":1,\"node\":\"n\",\"hint\":\"reboot\"}",
            b"{\"v\":1,\"node\":\"n\",\"hint\":\"wake\",\"tags\":7}",
            b"\xff\xfe",
        ] {
            assert!(NodeEvent::decode(bad).is_err(), "{bad:?}");
        }
        assert!(matches!(
            NodeEvent::decode(br#"{"v":2,"node":"n","hint":"wake_all"}"#),
            Err(NodeEventError::Version(2))
        ));
        let huge = vec![b' '; MAX_NODE_EVENT_BYTES + 1];
        assert!(matches!(
            NodeEvent::decode(&huge),
            Err(NodeEventError::TooLarge(_))
        ));
    }
}
