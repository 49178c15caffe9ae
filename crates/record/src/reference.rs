/// The record's identity in the archive: its chat and its position in the chat's log. It is
/// the record leaf's `reference`, the sealed body's AEAD associated data (a body cannot move
/// to another leaf), and what a receipt names.
pub fn reference(chat_id: &str, seq: u64) -> String {
    format!("{chat_id}/{seq}")
}

/// The chat and log position a reference names; `None` for anything else.
pub fn parse_reference(reference: &str) -> Option<(&str, u64)> {
    let (chat, seq) = reference.rsplit_once('/')?;
    if chat.is_empty() || !seq.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((chat, seq.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_round_trip_and_junk_is_refused() {
        let r = reference("8f14e45f", 42);
        assert_eq!(r, "8f14e45f/42");
        assert_eq!(parse_reference(&r), Some(("8f14e45f", 42)));
        for bad in [
            "",
            "/1",
            "abc",
            "abc/",
            "abc/-1",
            "abc/+1",
            "abc/1x",
            "abc/99999999999999999999",
        ] {
            assert_eq!(parse_reference(bad), None, "{bad:?}");
        }
    }
}
