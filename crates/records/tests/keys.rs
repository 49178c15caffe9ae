//! k-of-n unsealing with share integrity, and HPKE-sealed records.

use vellum_records::*;

fn unseal(public: &RecordsPublic, shares: &[&str]) -> Result<RecordsSecret, Error> {
    let mut unsealer = Unsealer::new(public.clone());
    let mut last = None;
    for share in shares {
        last = Some(unsealer.add(share)?);
    }
    match last {
        Some(UnsealProgress::Unsealed(secret)) => Ok(secret),
        _ => Err(Error::WrongKey),
    }
}

#[test]
fn any_k_shares_unseal_and_fewer_do_not() {
    let g = generate(5, 3, "records.test/vellum").unwrap();
    let public = RecordsPublic::parse(&g.public.to_json()).unwrap();
    let s: Vec<&str> = g.shares.iter().map(|s| s.as_str()).collect();
    let record = seal(&public.key_bytes().unwrap(), b"chat/1", b"the record").unwrap();

    for combo in [[0, 1, 2], [2, 3, 4], [0, 2, 4], [4, 1, 3]] {
        let secret = unseal(&public, &combo.map(|i| s[i])).unwrap();
        assert_eq!(
            open(&secret, b"chat/1", &record).unwrap().as_slice(),
            b"the record"
        );
        assert!(
            open(&secret, b"chat/2", &record).is_err(),
            "bound to its identity"
        );
    }
    let mut unsealer = Unsealer::new(public.clone());
    assert!(matches!(
        unsealer.add(s[0]).unwrap(),
        UnsealProgress::NeedMore { have: 1, need: 3 }
    ));
    assert!(matches!(
        unsealer.add(s[1]).unwrap(),
        UnsealProgress::NeedMore { have: 2, need: 3 }
    ));
    assert_eq!(unsealer.add(s[1]).err(), Some(Error::DuplicateShare(2)));
}

#[test]
fn corrupted_foreign_and_malformed_shares_are_named_and_change_nothing() {
    let g = generate(3, 2, "records.test/vellum").unwrap();
    let other = generate(3, 2, "records.test/vellum").unwrap();
    let mut unsealer = Unsealer::new(g.public.clone());
    assert!(matches!(
        unsealer.add(&other.shares[0]),
        Err(Error::CorruptedShare(1))
    ));
    // Flip one character of the base64 body.
    let share = g.shares[1].as_str();
    let body_start = share
        .rfind('\n')
        .and_then(|end| share[..end].rfind('\n'))
        .unwrap()
        + 1;
    let mut flipped = share.to_string().into_bytes();
    flipped[body_start + 5] = if flipped[body_start + 5] == b'A' {
        b'B'
    } else {
        b'A'
    };
    let flipped = String::from_utf8(flipped).unwrap();
    assert!(matches!(
        unsealer.add(&flipped),
        Err(Error::CorruptedShare(_)) | Err(Error::MalformedShare(_))
    ));
    for bad in [
        "",
        "hello",
        "vellum-records-share-v1\n2\n",
        "vellum-records-share-v1\n2\n!!!\n",
        "vellum-records-share-v1\nx\nAAAA\n",
    ] {
        assert!(
            matches!(unsealer.add(bad), Err(Error::MalformedShare(_))),
            "{bad:?}"
        );
    }
    assert_eq!(unsealer.have(), 0, "nothing was accepted");
    assert!(matches!(
        unsealer.add(&g.shares[2]).unwrap(),
        UnsealProgress::NeedMore { have: 1, need: 2 }
    ));
    assert!(matches!(
        unsealer.add(&g.shares[0]).unwrap(),
        UnsealProgress::Unsealed(_)
    ));
}

#[test]
fn splits_must_need_more_than_one_custodian() {
    assert!(generate(3, 1, "records.test/vellum").is_err());
    assert!(generate(2, 3, "records.test/vellum").is_err());
    assert!(generate(2, 2, "records.test/vellum").is_ok());
    assert!(RecordsPublic::parse("{}").is_err());
    let mut public = generate(3, 2, "records.test/vellum").unwrap().public;
    public.threshold = 1;
    assert!(RecordsPublic::parse(&public.to_json()).is_err());
}

#[test]
fn sealed_records_hide_their_content() {
    let g = generate(2, 2, "records.test/vellum").unwrap();
    let record = seal(
        &g.public.key_bytes().unwrap(),
        b"id",
        b"MARKER-sealed-record",
    )
    .unwrap();
    assert_eq!(record.sealed_key.len(), SEALED_KEY_LEN);
    for blob in [&record.body, &record.sealed_key] {
        assert!(!blob.windows(6).any(|w| w == b"MARKER"));
    }
    let secret = unseal(&g.public, &[&g.shares[0], &g.shares[1]]).unwrap();
    let mut tampered = record.clone();
    tampered.sealed_key[40] ^= 1;
    assert!(open(&secret, b"id", &tampered).is_err());
    let mut tampered = record.clone();
    tampered.body[20] ^= 1;
    assert!(open(&secret, b"id", &tampered).is_err());
}

/// Issue 11: keys derived from the records seed (FOIA case files) are the same from any k
/// shares, differ by label and by records key, and never equal the seed-derived HPKE key.
#[test]
fn issue_11_derived_keys_follow_the_seed_and_the_label() {
    let g = generate(3, 2, "records.test/vellum").unwrap();
    let s: Vec<&str> = g.shares.iter().map(|s| s.as_str()).collect();
    let a = unseal(&g.public, &[s[0], s[1]]).unwrap();
    let b = unseal(&g.public, &[s[2], s[0]]).unwrap();
    assert_eq!(*a.derive_key("cases v1"), *b.derive_key("cases v1"));
    assert_ne!(*a.derive_key("cases v1"), *a.derive_key("cases v2"));
    let other = generate(3, 2, "records.test/vellum").unwrap();
    let o: Vec<&str> = other.shares.iter().map(|s| s.as_str()).collect();
    let c = unseal(&other.public, &[o[0], o[1]]).unwrap();
    assert_ne!(*a.derive_key("cases v1"), *c.derive_key("cases v1"));
    assert_ne!(*a.derive_key("cases v1"), [0u8; 32]);
}
