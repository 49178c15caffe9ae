//! Known-answer tests: RFC 6962 / certificate-transparency reference trees, and the signed
//! notes of the C2SP spec and of Go's golang.org/x/mod/sumdb/note.

use base64::{engine::general_purpose::STANDARD, Engine};
use vellum_tlog::*;

fn h(s: &str) -> Hash {
    hex::decode(s).unwrap().try_into().unwrap()
}

/// The certificate-transparency reference inputs.
fn ct_leaves() -> Vec<Hash> {
    [
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    ]
    .iter()
    .map(|d| leaf_hash(&hex::decode(d).unwrap()))
    .collect()
}

const ROOTS: [&str; 9] = [
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
];

#[test]
fn roots_match_the_reference_for_every_size() {
    let leaves = ct_leaves();
    for (size, want) in ROOTS.iter().enumerate() {
        assert_eq!(root(&leaves[..size]), h(want), "size {size}");
    }
}

#[test]
fn inclusion_and_consistency_proofs_match_the_reference() {
    let leaves = ct_leaves();
    let cases = [
        (
            0,
            8,
            vec![
                "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
            ],
        ),
        (
            5,
            8,
            vec![
                "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            ],
        ),
    ];
    for (index, size, want) in cases {
        let proof = inclusion_proof(&leaves, index, size).unwrap();
        assert_eq!(proof, want.iter().map(|s| h(s)).collect::<Vec<_>>());
        verify_inclusion(
            &leaves[index as usize],
            index,
            size,
            &proof,
            &h(ROOTS[size as usize]),
        )
        .unwrap();
    }
    let cases = [
        (
            2,
            8,
            vec![
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
            ],
        ),
        (
            6,
            8,
            vec![
                "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
                "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            ],
        ),
    ];
    for (old, new, want) in cases {
        let proof = consistency_proof(&leaves, old, new).unwrap();
        assert_eq!(proof, want.iter().map(|s| h(s)).collect::<Vec<_>>());
        verify_consistency(
            old,
            new,
            &h(ROOTS[old as usize]),
            &h(ROOTS[new as usize]),
            &proof,
        )
        .unwrap();
    }
}

#[test]
fn every_proof_verifies_and_every_mangled_one_fails() {
    let leaves: Vec<Hash> = (0u32..40).map(|i| leaf_hash(&i.to_be_bytes())).collect();
    let roots: Vec<Hash> = (0..=leaves.len()).map(|n| root(&leaves[..n])).collect();
    for size in 1..=leaves.len() as u64 {
        for index in 0..size {
            let proof = inclusion_proof(&leaves, index, size).unwrap();
            let (leaf, r) = (&leaves[index as usize], &roots[size as usize]);
            verify_inclusion(leaf, index, size, &proof, r).unwrap();
            // (A checkpoint binds size and root together, so only the root is varied here.)
            if index + 1 < size {
                assert!(
                    verify_inclusion(leaf, index, size, &proof, &roots[size as usize - 1]).is_err(),
                    "old root {index}/{size}"
                );
            }
            let other_leaf = &leaves[(index as usize + 1) % leaves.len()];
            assert!(
                verify_inclusion(other_leaf, index, size, &proof, r).is_err(),
                "other leaf {index}/{size}"
            );
            if let Some((last, rest)) = proof.split_last() {
                assert!(
                    verify_inclusion(leaf, index, size, rest, r).is_err(),
                    "truncated {index}/{size}"
                );
                let mut flipped = proof.clone();
                flipped[0][0] ^= 1;
                assert!(verify_inclusion(leaf, index, size, &flipped, r).is_err());
                let mut longer = proof.clone();
                longer.push(*last);
                assert!(
                    verify_inclusion(leaf, index, size, &longer, r).is_err(),
                    "extended {index}/{size}"
                );
            }
        }
        for old in 0..=size {
            let proof = consistency_proof(&leaves, old, size).unwrap();
            verify_consistency(
                old,
                size,
                &roots[old as usize],
                &roots[size as usize],
                &proof,
            )
            .unwrap();
            if old > 0 && old < size {
                let mut flipped = proof.clone();
                flipped[0][5] ^= 0x80;
                assert!(verify_consistency(
                    old,
                    size,
                    &roots[old as usize],
                    &roots[size as usize],
                    &flipped
                )
                .is_err());
                assert!(verify_consistency(
                    old,
                    size,
                    &roots[old as usize],
                    &roots[size as usize],
                    &proof[1..]
                )
                .is_err());
                // A rewritten history: a different old root never verifies.
                assert!(verify_consistency(
                    old,
                    size,
                    &roots[old as usize - 1],
                    &roots[size as usize],
                    &proof
                )
                .is_err());
            }
        }
    }
    assert!(inclusion_proof(&leaves, 5, 5).is_err());
    assert!(consistency_proof(&leaves, 6, 5).is_err());
    assert!(verify_consistency(6, 5, &roots[6], &roots[5], &[]).is_err());
}

#[test]
fn go_sumdb_note_known_answer() {
    // golang.org/x/mod/sumdb/note: PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz
    let private = STANDARD
        .decode("AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz")
        .unwrap();
    assert_eq!(private[0], 1);
    let signer = NoteSigner::new("PeterNeumann", &private[1..].try_into().unwrap()).unwrap();
    assert_eq!(
        signer.verifier_key(),
        "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
    );
    let text = "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n";
    let want = format!("{text}\n\u{2014} PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n");
    assert_eq!(signer.sign(text).unwrap(), want);
    let verifier = NoteVerifier::parse(&signer.verifier_key()).unwrap();
    assert_eq!(NoteVerifier::open(&want, &[verifier]).unwrap(), text);
}

#[test]
fn c2sp_spec_example_verifies_and_tampering_does_not() {
    let verifier = NoteVerifier::parse(
        "example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k",
    )
    .unwrap();
    let note = "This is an example message.\n\n\u{2014} example.com/foo Uw2QOkn8srV1yJGh2VYRlL1Tnagv1YEq6TfXppzi2ONncAlTgK7Ztg1ERYNZXsYjOBH3mFXmRKuwHjG1Yu72IneyaQM=\n";
    assert_eq!(
        NoteVerifier::open(note, std::slice::from_ref(&verifier)).unwrap(),
        "This is an example message.\n"
    );
    let altered = note.replace("example message", "exemplary message");
    assert_eq!(
        NoteVerifier::open(&altered, std::slice::from_ref(&verifier)),
        Err(Error::BadSignature("example.com/foo".into()))
    );
    // A note signed only by unknown keys is not trusted.
    let other = NoteSigner::new("other.example/log", &[9; 32]).unwrap();
    assert_eq!(
        NoteVerifier::open(
            &other.sign("hello\n").unwrap(),
            std::slice::from_ref(&verifier)
        ),
        Err(Error::Unverified)
    );
    for bad in [
        "",
        "no signatures\n",
        "text\n\nnot a signature\n",
        "text\n\n\u{2014} example.com/foo !!!\n",
        "text\n\n\u{2014} example.com/foo AAA=\n",
    ] {
        assert!(
            NoteVerifier::open(bad, std::slice::from_ref(&verifier)).is_err(),
            "{bad:?}"
        );
    }
    for bad_key in [
        "",
        "name",
        "name+c74f20a3",
        "PeterNeumann+c74f20a4+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
        "Peter Neumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
        "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10",
    ] {
        assert!(NoteVerifier::parse(bad_key).is_err(), "{bad_key:?}");
    }
}

#[test]
fn checkpoints_round_trip_and_reject_malformed_text() {
    let leaves = ct_leaves();
    let cp = Checkpoint {
        origin: "records.example.org/vellum".into(),
        size: 8,
        root: root(&leaves),
        extensions: vec!["ext one".into()],
    };
    let text = cp.to_text();
    assert_eq!(
        text,
        format!(
            "records.example.org/vellum\n8\n{}\next one\n",
            STANDARD.encode(h(ROOTS[8]))
        )
    );
    assert_eq!(Checkpoint::parse(&text).unwrap(), cp);
    let signer = NoteSigner::new("records.example.org/vellum", &[3; 32]).unwrap();
    let note = signer.sign(&text).unwrap();
    let opened = NoteVerifier::open(&note, &[signer.verifier()]).unwrap();
    assert_eq!(Checkpoint::parse(opened).unwrap(), cp);
    for bad in [
        "",
        "origin\n",
        "origin\n08\nAAAA\n",
        "origin\n-1\nAAAA\n",
        "origin\n1\nnot base64\n",
        "origin\n1\nAAAA\n",
        "\n1\nAAAA\n",
        "origin\n1\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n\n",
    ] {
        assert!(Checkpoint::parse(bad).is_err(), "{bad:?}");
    }
    assert!(Checkpoint::parse("origin\n0\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n").is_ok());
}

#[test]
fn incremental_roots_equal_recursive_roots() {
    let leaves: Vec<Hash> = (0u32..70).map(|i| leaf_hash(&i.to_le_bytes())).collect();
    let mut builder = RootBuilder::new();
    assert_eq!(builder.root(), empty_root());
    for (n, leaf) in leaves.iter().enumerate() {
        builder.push(*leaf);
        assert_eq!(builder.size(), n as u64 + 1);
        assert_eq!(builder.root(), root(&leaves[..=n]), "size {}", n + 1);
    }
    let mut ct = RootBuilder::new();
    for leaf in ct_leaves() {
        ct.push(leaf);
    }
    assert_eq!(ct.root(), h(ROOTS[8]));
}
