//! Naming a chat on the command line (issue 10): a chat id, a unique prefix of one (at least
//! [`MIN_PREFIX`] hex digits), or a title, matched without regard to case. Titles are unique
//! within one user's own chat list, so a title names one chat unless another member's chat
//! arrived with it.

use crate::{ChatRow, Client, Error};

/// The shortest id prefix that names a chat: shorter ones would match titles by accident.
pub const MIN_PREFIX: usize = 4;

/// How many close titles an unknown name suggests.
const MAX_SUGGESTIONS: usize = 3;

/// The chat `name` names among `chats`: its id, a unique id prefix, or its title (any case).
/// An ambiguous name lists every candidate (id and title); an unknown one suggests close
/// titles.
pub(crate) fn resolve<'a>(chats: &'a [ChatRow], name: &str) -> Result<&'a ChatRow, Error> {
    if let Some(c) = chats.iter().find(|c| c.group_id == name) {
        return Ok(c);
    }
    let folded = name.to_lowercase();
    let titled: Vec<&ChatRow> = chats
        .iter()
        .filter(|c| {
            c.title
                .as_deref()
                .is_some_and(|t| t.to_lowercase() == folded)
        })
        .collect();
    let candidates = if !titled.is_empty() {
        // Chats of other creators may share a title in other cases: the exact one wins.
        let exact: Vec<&ChatRow> = titled
            .iter()
            .copied()
            .filter(|c| c.title.as_deref() == Some(name))
            .collect();
        if exact.len() == 1 {
            exact
        } else {
            titled
        }
    } else if name.len() >= MIN_PREFIX && name.bytes().all(|b| b.is_ascii_hexdigit()) {
        chats
            .iter()
            .filter(|c| c.group_id.starts_with(&folded))
            .collect()
    } else {
        Vec::new()
    };
    match candidates.as_slice() {
        [one] => Ok(one),
        [] => Err(Error::UnknownChat(unknown_message(chats, name))),
        many => Err(Error::AmbiguousChat(ambiguous_message(name, many))),
    }
}

/// Whether `title` is taken in this user's list (by a chat other than `except`), any case.
pub(crate) fn title_taken(chats: &[ChatRow], title: &str, except: Option<&str>) -> bool {
    let folded = title.to_lowercase();
    chats.iter().any(|c| {
        !c.removed
            && Some(c.group_id.as_str()) != except
            && c.title
                .as_deref()
                .is_some_and(|t| t.to_lowercase() == folded)
    })
}

/// Checks a new title: 1 to 200 bytes, no control characters, unique in this user's list.
pub(crate) fn check_title(
    chats: &[ChatRow],
    title: &str,
    except: Option<&str>,
) -> Result<(), Error> {
    if title.trim().is_empty() || title.len() > 200 {
        return Err(Error::Invalid(
            "a chat title is 1 to 200 bytes, not only spaces".into(),
        ));
    }
    if title.chars().any(char::is_control) {
        return Err(Error::Invalid(
            "a chat title holds no control characters".into(),
        ));
    }
    if title_taken(chats, title, except) {
        return Err(Error::Invalid(format!(
            "you already have a chat titled {title:?} (titles are unique in your chat list, whatever their case): choose another title"
        )));
    }
    Ok(())
}

fn ambiguous_message(name: &str, candidates: &[&ChatRow]) -> String {
    let listed: Vec<String> = candidates
        .iter()
        .map(|c| format!("{} {:?}", c.group_id, c.title.as_deref().unwrap_or("")))
        .collect();
    format!(
        "{name:?} matches {} chats: {}; name one by its id (or a unique prefix of it)",
        candidates.len(),
        listed.join(", ")
    )
}

fn unknown_message(chats: &[ChatRow], name: &str) -> String {
    let folded = name.to_lowercase();
    let mut close: Vec<(usize, &str)> = chats
        .iter()
        .filter_map(|c| c.title.as_deref())
        .filter_map(|t| {
            let lower = t.to_lowercase();
            let distance = edit_distance(&lower, &folded);
            let near = distance <= (folded.chars().count() / 3).max(2);
            (near || (folded.chars().count() >= 3 && lower.contains(&folded)))
                .then_some((distance, t))
        })
        .collect();
    close.sort();
    close.dedup_by(|a, b| a.1 == b.1);
    let mut message = format!("no chat matches {name:?}");
    if !close.is_empty() {
        let titles: Vec<String> = close
            .iter()
            .take(MAX_SUGGESTIONS)
            .map(|(_, t)| format!("{t:?}"))
            .collect();
        message.push_str(&format!("; did you mean {}?", titles.join(" or ")));
    }
    message
}

/// Levenshtein distance over characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (diagonal + usize::from(ca != *cb))
                .min(above + 1)
                .min(row[j] + 1);
            diagonal = above;
        }
    }
    row[b.len()]
}

impl Client {
    /// Resolves CHAT to a chat id: see [`resolve`].
    pub fn resolve_chat(&self, chat: &str) -> Result<String, Error> {
        let chats = self.store.chats()?;
        resolve(&chats, chat).map(|c| c.group_id.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chat(id: &str, title: &str) -> ChatRow {
        ChatRow {
            group_id: id.into(),
            title: Some(title.into()),
            last_seq: 0,
            removed: false,
            held: false,
        }
    }

    #[test]
    fn issue_10_names_resolve_by_id_prefix_and_title_in_any_case() {
        let chats = [
            chat("abcd1234", "Field Ops"),
            chat("abcd9999", "budget"),
            chat("ffff0000", "Budget"),
        ];
        assert_eq!(resolve(&chats, "abcd1234").unwrap().group_id, "abcd1234");
        assert_eq!(resolve(&chats, "field ops").unwrap().group_id, "abcd1234");
        assert_eq!(resolve(&chats, "FIELD OPS").unwrap().group_id, "abcd1234");
        assert_eq!(resolve(&chats, "abcd1").unwrap().group_id, "abcd1234");
        assert_eq!(resolve(&chats, "FFFF").unwrap().group_id, "ffff0000");
        // The exact case wins among chats that differ only in case.
        assert_eq!(resolve(&chats, "Budget").unwrap().group_id, "ffff0000");
        // Too short a prefix names nothing.
        assert!(matches!(resolve(&chats, "fff"), Err(Error::UnknownChat(_))));
        // A prefix of two ids lists both, with their titles.
        let Err(Error::AmbiguousChat(m)) = resolve(&chats, "abcd") else {
            panic!("expected ambiguous")
        };
        assert!(m.contains("abcd1234 \"Field Ops\""), "{m}");
        assert!(m.contains("abcd9999 \"budget\""), "{m}");
        // Two titles in neither case exactly: both listed with their ids.
        let Err(Error::AmbiguousChat(m)) = resolve(&chats, "BUDGET") else {
            panic!("expected ambiguous")
        };
        assert!(m.contains("abcd9999 \"budget\""), "{m}");
        assert!(m.contains("ffff0000 \"Budget\""), "{m}");
    }

    #[test]
    fn issue_10_an_unknown_name_suggests_close_titles() {
        let chats = [chat("abcd1234", "field-ops"), chat("ffff0000", "budget")];
        let Err(Error::UnknownChat(m)) = resolve(&chats, "feild-ops") else {
            panic!("expected unknown")
        };
        assert!(m.contains("did you mean \"field-ops\""), "{m}");
        assert!(!m.contains("budget"), "{m}");
        let Err(Error::UnknownChat(m)) = resolve(&chats, "zzzzzzzz") else {
            panic!("expected unknown")
        };
        assert!(!m.contains("did you mean"), "{m}");
    }

    #[test]
    fn issue_10_titles_are_unique_in_a_users_list_whatever_their_case() {
        let mut chats = vec![chat("abcd1234", "Field Ops")];
        assert!(check_title(&chats, "field ops", None).is_err());
        assert!(
            check_title(&chats, "field ops", Some("abcd1234")).is_ok(),
            "renaming itself"
        );
        assert!(check_title(&chats, "other", None).is_ok());
        assert!(check_title(&chats, "  ", None).is_err());
        assert!(check_title(&chats, "bad\u{1b}[31m", None).is_err());
        chats[0].removed = true;
        assert!(
            check_title(&chats, "field ops", None).is_ok(),
            "a chat one was removed from"
        );
    }
}
