//! Noticing a server that went back in time (restored from a backup) or shows this device
//! another history than before (a fork): each sync checks the group's log against the last
//! position this device holds a running hash for, and recomputes the hashes the server
//! claims from the entries it sends.

use vellum_wire::{log_hash_next, GroupEntries};

use crate::{now_millis, random_id, Client, Error, LogPosition, MessageKind, MessageRow};

/// What every member sees in the chat when its server's history changed under it.
pub const HISTORY_CHANGED: &str = "Warning: the server's history of this chat changed: it was \
restored from a backup or forked; messages may be missing";

pub(crate) fn parse_hash(hex_hash: Option<&str>) -> Option<[u8; 32]> {
    hex::decode(hex_hash?).ok()?.try_into().ok()
}

impl Client {
    /// Checks a group's entries before they are processed. On a rewind or fork, records a
    /// loud event in the chat, moves the cursor back so that entries at positions this
    /// device already passed are processed rather than skipped (MLS and message ids keep
    /// out what was seen before), and returns the event.
    pub(crate) fn check_log(&mut self, group: &GroupEntries) -> Result<Option<MessageRow>, Error> {
        let Some(chat) = self.store.chat(&group.group_id)? else {
            return Ok(None);
        };
        if chat.removed {
            return Ok(None);
        }
        let known = self.store.log_position(&group.group_id)?;
        let mut why = None;
        if let Some(head) = &group.head {
            if head.seq < chat.last_seq {
                why = Some(format!(
                    "its log ends at {} but this device had seen {}",
                    head.seq, chat.last_seq
                ));
            }
            let was = known.as_ref().and_then(|k| k.instance_id.as_deref());
            if was.is_some_and(|was| was != head.instance_id) {
                why = Some("the server's database is another one than before".into());
            }
        }
        let mut prev = known.as_ref().map(|k| (k.seq, k.log_hash));
        for entry in &group.entries {
            let Some(claimed) = parse_hash(entry.log_hash.as_deref()) else {
                prev = None; // an older server: nothing to check against
                continue;
            };
            if let Some(k) = known.as_ref().filter(|k| k.seq == entry.seq) {
                if k.log_hash != claimed {
                    why = Some(format!(
                        "entry {} is not the one this device saw",
                        entry.seq
                    ));
                }
            }
            if let Some((seq, hash)) = prev.filter(|(seq, _)| entry.seq == seq + 1) {
                let computed = log_hash_next(
                    &hash,
                    entry.seq,
                    entry.epoch,
                    entry.kind,
                    &entry.sender_device,
                    &entry.payload,
                );
                if computed != claimed {
                    why = Some(format!(
                        "entry {} does not follow from the ones before it",
                        seq + 1
                    ));
                }
            }
            prev = Some((entry.seq, claimed));
        }
        let Some(why) = why else { return Ok(None) };
        let warning = history_changed(&group.group_id, &why);
        self.store.begin()?;
        let saved = self
            .store
            .add_message(&warning)
            .and_then(|_| match group.entries.first() {
                Some(first) => self
                    .store
                    .rewind_last_seq(&group.group_id, first.seq.saturating_sub(1)),
                None => Ok(()),
            })
            // The server's history from here on is the one to check against.
            .and_then(|_| self.store.set_log_position(&group.group_id, None));
        self.finish_tx(saved)?;
        Ok(Some(warning))
    }

    /// Before a text message is stored at `seq`: a server that forgot entries (a restored
    /// backup) hands out positions again. If one of this device's own messages sat there,
    /// the server lost it: it becomes unconfirmed, so the next sync sends it again under its
    /// id, and the chat gets the loud warning. For a message this device just sent (`newest`:
    /// `seq` is the end of the server's log), every own message from `seq` on was lost.
    /// (Other members' messages stay shown; the log check above warns a device whose cursor
    /// had passed them.)
    pub(crate) fn check_position(
        &self,
        group_id: &str,
        seq: u64,
        id: &str,
        newest: bool,
    ) -> Result<(), Error> {
        let lost = self
            .store
            .own_messages_at(group_id, &self.device_id, seq, newest, id)?;
        if lost.is_empty() {
            return Ok(());
        }
        for lost_id in &lost {
            self.store.unconfirm(group_id, lost_id)?;
        }
        let why = format!(
            "it handed out position {seq} again and no longer holds {} of your messages; they are sent again",
            lost.len()
        );
        self.store.add_message(&history_changed(group_id, &why))?;
        Ok(())
    }

    /// After a group's entries were processed: remembers the last one's position and hash.
    pub(crate) fn note_log_position(&self, group: &GroupEntries) -> Result<(), Error> {
        let Some(last) = group.entries.last() else {
            return Ok(());
        };
        let Some(log_hash) = parse_hash(last.log_hash.as_deref()) else {
            return Ok(());
        };
        if self
            .store
            .chat(&group.group_id)?
            .is_none_or(|c| c.last_seq != last.seq)
        {
            return Ok(()); // not processed (not joined, or removed)
        }
        self.store.set_log_position(
            &group.group_id,
            Some(&LogPosition {
                seq: last.seq,
                log_hash,
                instance_id: group.head.as_ref().map(|h| h.instance_id.clone()),
            }),
        )
    }
}

/// The loud event a chat gets when its server's history changed under this device.
fn history_changed(group_id: &str, why: &str) -> MessageRow {
    // Shown in the chat itself (sync, watch, history); the log keeps the detail.
    tracing::info!(chat = %group_id, %why, "{HISTORY_CHANGED}");
    let now = now_millis();
    let text = format!("{HISTORY_CHANGED} ({why}).");
    MessageRow {
        group_id: group_id.to_owned(),
        id: random_id(),
        kind: MessageKind::Event,
        sender_user: String::new(),
        sender_device: String::new(),
        sent_at: now,
        received_at: now,
        seq: None,
        text: text.clone(),
        expires_at: None,
        burn_secs: None,
        read_at: None,
        burn_at: None,
        archived_leaf: None,
        salt: None,
        event: Some(crate::ChatEvent::Notice { text }),
        extra: Default::default(),
    }
}

#[cfg(test)]
mod tests {
    use vellum_wire::{log_hash_start, EntryKind, LogEntry, LogHead};

    use super::*;

    const OPS: &str = "12517faf72c1d1108cd30103e90aab1a312c22357b46cec2635bea4302dda3db";

    /// Alice's 0.1.0 profile (tests/fixtures), whose `ops` chat is at seq 4, with a known
    /// position at seq 4 on server database `i1`. Opened offline: nothing here talks to a
    /// server.
    fn alice() -> (tempfile::TempDir, Client, [u8; 32]) {
        let home = tempfile::tempdir().unwrap();
        let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../tests/fixtures/v0.1.0/alice/vellum.db");
        std::fs::copy(fixture, home.path().join("vellum.db")).unwrap();
        let client = Client::open(home.path()).unwrap();
        let h4 = log_hash_start("anything");
        client
            .store
            .set_log_position(
                OPS,
                Some(&LogPosition {
                    seq: 4,
                    log_hash: h4,
                    instance_id: Some("i1".into()),
                }),
            )
            .unwrap();
        (home, client, h4)
    }

    fn entry(seq: u64, prev: &[u8; 32]) -> LogEntry {
        let payload = format!("entry {seq}").into_bytes();
        let hash = log_hash_next(prev, seq, 1, EntryKind::Application, "dev", &payload);
        LogEntry {
            seq,
            epoch: 1,
            kind: EntryKind::Application,
            sender_device: "dev".into(),
            received_at: 0,
            payload: payload.into(),
            log_hash: Some(hex::encode(hash)),
        }
    }

    fn group(entries: Vec<LogEntry>, instance: &str) -> GroupEntries {
        let last = entries.last().unwrap();
        GroupEntries {
            group_id: OPS.into(),
            head: Some(LogHead {
                instance_id: instance.into(),
                seq: last.seq,
                log_hash: last.log_hash.clone().unwrap(),
            }),
            entries,
        }
    }

    fn warned(client: &mut Client, g: &GroupEntries) -> Option<String> {
        let warning = client.check_log(g).unwrap()?;
        let history = client.store.history(OPS).unwrap();
        assert!(history.contains(&warning), "recorded in the chat");
        assert!(warning.text.starts_with(HISTORY_CHANGED));
        Some(warning.text)
    }

    #[test]
    fn entries_that_follow_from_the_known_position_pass() {
        let (_home, mut client, h4) = alice();
        let e5 = entry(5, &h4);
        let e6 = entry(6, &parse_hash(e5.log_hash.as_deref()).unwrap());
        assert_eq!(warned(&mut client, &group(vec![e5, e6], "i1")), None);
        assert_eq!(client.store.chat(OPS).unwrap().unwrap().last_seq, 4);
    }

    #[test]
    fn a_hash_that_does_not_follow_from_the_entries_is_noticed() {
        let (_home, mut client, _) = alice();
        let forged = entry(5, &[7; 32]);
        let why = warned(&mut client, &group(vec![forged], "i1")).unwrap();
        assert!(why.contains("entry 5 does not follow"), "{why}");
    }

    #[test]
    fn another_history_at_a_known_position_is_noticed() {
        let (_home, mut client, _) = alice();
        let other4 = entry(4, &[1; 32]);
        let e5 = entry(5, &parse_hash(other4.log_hash.as_deref()).unwrap());
        let why = warned(&mut client, &group(vec![other4, e5], "i1")).unwrap();
        assert!(why.contains("entry 4 is not the one"), "{why}");
        assert_eq!(
            client.store.chat(OPS).unwrap().unwrap().last_seq,
            3,
            "entry 4 of the new history is processed, not skipped"
        );
        assert_eq!(client.store.log_position(OPS).unwrap(), None);
    }

    #[test]
    fn a_log_that_ends_before_this_device_is_noticed() {
        let (_home, mut client, _) = alice();
        let e3 = entry(3, &[2; 32]);
        let why = warned(&mut client, &group(vec![e3], "i1")).unwrap();
        assert!(
            why.contains("ends at 3 but this device had seen 4"),
            "{why}"
        );
        assert_eq!(client.store.chat(OPS).unwrap().unwrap().last_seq, 2);
    }

    #[test]
    fn another_server_database_is_noticed() {
        let (_home, mut client, h4) = alice();
        let why = warned(&mut client, &group(vec![entry(5, &h4)], "i2")).unwrap();
        assert!(why.contains("another one"), "{why}");
    }
}
