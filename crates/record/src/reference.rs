/// The record's identity in the archive: its chat, its position in the chat's log and
/// (servers from 0.2 on) the running log hash after that entry, so that a position a
/// restored server hands out again names another record while the same entry delivered
/// twice names the same one. It is the record leaf's `reference`, the sealed body's AEAD
/// associated data (a body cannot move to another leaf), and what a receipt names.
pub fn reference(chat_id: &str, seq: u64, log_hash: Option<&str>) -> String {
    match log_hash {
        Some(hash) => format!("{chat_id}/{seq}/{hash}"),
        None => format!("{chat_id}/{seq}"),
    }
}

/// The chat, log position and log hash a reference names; `None` for anything else.
pub fn parse_reference(reference: &str) -> Option<(&str, u64, Option<&str>)> {
    let (rest, hash) = match reference.rsplit_once('/') {
        Some((rest, last))
            if last.len() == 64
                && last.bytes().all(|b| b.is_ascii_hexdigit())
                && rest.contains('/') =>
        {
            (rest, Some(last))
        }
        _ => (reference, None),
    };
    let (chat, seq) = rest.rsplit_once('/')?;
    if chat.is_empty() || seq.is_empty() || !seq.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((chat, seq.parse().ok()?, hash))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_round_trip_and_junk_is_refused() {
        let r = reference("8f14e45f", 42, None);
        assert_eq!(r, "8f14e45f/42");
        assert_eq!(parse_reference(&r), Some(("8f14e45f", 42, None)));
        let hash = "ab".repeat(32);
        let r = reference("8f14e45f", 42, Some(&hash));
        assert_eq!(r, format!("8f14e45f/42/{hash}"));
        assert_eq!(
            parse_reference(&r),
            Some(("8f14e45f", 42, Some(hash.as_str())))
        );
        for bad in [
            "",
            "/1",
            "abc",
            "abc/",
            "abc/-1",
            "abc/+1",
            "abc/1x",
            "abc/99999999999999999999",
            &format!("abc/{hash}"),
            &format!("abc/x/{hash}"),
        ] {
            assert_eq!(parse_reference(bad), None, "{bad:?}");
        }
    }
}
