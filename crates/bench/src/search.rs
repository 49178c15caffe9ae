//! The records search (issue 11): a synthetic archive of N records (Zipf-distributed words
//! over a 30,000-word vocabulary, 1,000 chats, 400 users, a year of receipt times); the
//! in-memory index's build rate next to the rate at which the archiver opens sealed records
//! (HPKE) during catch-up; p50/p95 latency of term, phrase, prefix and filtered queries; and
//! ripgrep over a plaintext dump of the same corpus for the same term and phrase, in the
//! same run.

use std::io::Write;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use vellum_record::{Member, Record, RecordKind, FORMAT_VERSION};
use vellum_search::{Filters, SearchIndex};

const VOCABULARY: usize = 30_000;
const CHATS: usize = 1_000;
const USERS: usize = 400;
/// 2026-01-01T00:00:00Z, and a year of receipt times from there.
const START_MS: i64 = 1_767_225_600_000;
const YEAR_MS: i64 = 365 * 86_400_000;
/// Queries of each kind timed (each a different word or phrase where it can be).
const RUNS: usize = 200;
const RG_RUNS: usize = 10;

/// A small deterministic generator (xorshift64*): the same corpus every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Word `rank` of the vocabulary: English's most common words first, then pronounceable
/// made-up words (distinct for distinct ranks).
fn word(rank: usize) -> String {
    const COMMON: &[&str] = &[
        "the", "to", "and", "a", "of", "in", "is", "it", "you", "that", "for", "on", "we", "this",
        "be", "with", "at", "are", "have", "not", "can", "will", "do", "me", "so", "meeting",
        "gate", "north", "report", "today", "tomorrow", "permit", "budget", "contract", "site",
        "call", "review", "draft", "plan", "team",
    ];
    if let Some(w) = COMMON.get(rank) {
        return (*w).to_owned();
    }
    const ONSETS: &[&str] = &[
        "b", "c", "d", "f", "g", "h", "k", "l", "m", "n", "p", "r", "s", "t", "v", "w", "br", "st",
        "tr", "pl",
    ];
    const VOWELS: &[&str] = &["a", "e", "i", "o", "u", "ai", "ea", "ou"];
    const CODAS: &[&str] = &["", "n", "r", "s", "t", "l", "nd", "ck", "m", "x"];
    let mut n = rank;
    let mut out = String::new();
    // Two or three syllables, a unique mixed-radix spelling of the rank.
    loop {
        out.push_str(ONSETS[n % ONSETS.len()]);
        n /= ONSETS.len();
        out.push_str(VOWELS[n % VOWELS.len()]);
        n /= VOWELS.len();
        out.push_str(CODAS[n % CODAS.len()]);
        n /= CODAS.len();
        if n == 0 {
            break;
        }
    }
    out
}

/// Zipf(1.07) ranks over the vocabulary, by inverse-CDF table lookup.
struct Zipf(Vec<f64>);

impl Zipf {
    fn new(n: usize) -> Self {
        let mut cdf = Vec::with_capacity(n);
        let mut sum = 0.0;
        for k in 1..=n {
            sum += 1.0 / (k as f64).powf(1.07);
            cdf.push(sum);
        }
        for c in &mut cdf {
            *c /= sum;
        }
        Self(cdf)
    }

    fn sample(&self, rng: &mut Rng) -> usize {
        let u = rng.unit();
        self.0.partition_point(|&c| c < u).min(self.0.len() - 1)
    }
}

struct Corpus {
    words: Vec<String>,
    /// Each chat's members (user numbers).
    chats: Vec<Vec<usize>>,
}

impl Corpus {
    fn new(rng: &mut Rng) -> Self {
        let chats = (0..CHATS)
            .map(|_| {
                let size = 2 + rng.below(7);
                let mut members: Vec<usize> = (0..size).map(|_| rng.below(USERS)).collect();
                members.sort_unstable();
                members.dedup();
                if members.len() < 2 {
                    members.push((members[0] + 1) % USERS);
                }
                members
            })
            .collect();
        Self {
            words: (0..VOCABULARY).map(word).collect(),
            chats,
        }
    }

    fn record(&self, i: u64, rng: &mut Rng, zipf: &Zipf) -> Record {
        let chat = rng.below(CHATS);
        let members = &self.chats[chat];
        let sender = members[rng.below(members.len())];
        let length = 3 + rng.below(18);
        let text: Vec<&str> = (0..length)
            .map(|_| self.words[zipf.sample(rng)].as_str())
            .collect();
        let received_at = START_MS + (i as i64 * YEAR_MS) / 1_000_000 % YEAR_MS;
        Record {
            version: FORMAT_VERSION,
            chat_id: format!("chat{chat:04}"),
            chat_title: Some(format!("room {chat}")),
            seq: i,
            kind: RecordKind::Message,
            message_id: Some(format!("m{i}")),
            sender_user: format!("user{sender}"),
            sender_device: format!("user{sender}-1"),
            recipients: members
                .iter()
                .filter(|&&m| m != sender)
                .map(|m| Member {
                    user: format!("user{m}"),
                    device_id: format!("user{m}-1"),
                })
                .collect(),
            sent_at: received_at,
            received_at,
            text: Some(text.join(" ")),
            expire_secs: None,
            burn_secs: None,
            log_hash: None,
            salt: None,
            reply_to: None,
            mentions: Vec::new(),
            target: None,
            remove: false,
        }
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// p50 and p95 of `samples`, ms.
fn percentiles(mut samples: Vec<Duration>) -> (f64, f64) {
    samples.sort_unstable();
    let at = |p: f64| ms(samples[((samples.len() - 1) as f64 * p).round() as usize]);
    (at(0.50), at(0.95))
}

fn rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kib| kib.parse::<f64>().ok())
        })
        .map_or(0.0, |kib| kib / 1024.0)
}

/// Runs `rg ARGS dump` `RG_RUNS` times: p50/p95 ms and the count of matching lines.
fn ripgrep(args: &[&str], dump: &std::path::Path) -> Result<((f64, f64), u64)> {
    let mut samples = Vec::new();
    let mut count = 0;
    for _ in 0..RG_RUNS {
        let started = Instant::now();
        let out = Command::new("rg")
            .args(["--count", "--ignore-case"])
            .args(args)
            .arg(dump)
            .output()
            .context("running rg (ripgrep)")?;
        samples.push(started.elapsed());
        count = String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .unwrap_or(0);
    }
    Ok((percentiles(samples), count))
}

pub fn search_figures(n: u64) -> Result<()> {
    let mut rng = Rng(0x5eed_0011);
    let corpus = Corpus::new(&mut rng);
    let zipf = Zipf::new(VOCABULARY);
    let dir = tempfile::tempdir()?;
    let dump_path = dir.path().join("corpus.txt");
    let mut dump = std::io::BufWriter::new(std::fs::File::create(&dump_path)?);

    println!("\nrecords search (issue 11): {n} synthetic records, Zipf(1.07) words over {VOCABULARY}, 3-20 words each, {CHATS} chats of 2-8 of {USERS} users, a year of receipt times");
    let rss_before = rss_mib();
    let mut index = SearchIndex::new()?;
    let mut generating = Duration::ZERO;
    let mut indexing = Duration::ZERO;
    // Phrases that occur: adjacent words of every 5,000th record.
    let mut phrases = Vec::new();
    for i in 0..n {
        let started = Instant::now();
        let record = corpus.record(i, &mut rng, &zipf);
        let text = record.text.as_deref().unwrap_or_default();
        writeln!(
            dump,
            "{i}\t{}\t{}\t{}\t{text}",
            record.chat_id, record.sender_user, record.received_at
        )?;
        if i % 5_000 == 0 {
            let words: Vec<&str> = text.split(' ').collect();
            phrases.push(format!("{} {}", words[0], words[1]));
        }
        generating += started.elapsed();
        let started = Instant::now();
        index.add(i, &record)?;
        indexing += started.elapsed();
    }
    let started = Instant::now();
    index.commit()?;
    indexing += started.elapsed();
    dump.flush()?;
    drop(dump);
    let rss_after = rss_mib();
    println!("| step | figure |");
    println!("|---|---|");
    println!(
        "| index build (add + commit), records/s | {:.0} ({:.1} s) |",
        n as f64 / indexing.as_secs_f64(),
        indexing.as_secs_f64()
    );
    println!(
        "| resident memory of the index, MiB (process growth, {} MB dump) | {:.0} |",
        std::fs::metadata(&dump_path)?.len() / 1_000_000,
        rss_after - rss_before
    );
    println!(
        "| (generating the corpus and its dump, s) | {:.1} |",
        generating.as_secs_f64()
    );
    open_rate()?;

    let filters = Filters::default();
    let time = |index: &mut SearchIndex,
                queries: &[String],
                filters: &Filters|
     -> Result<((f64, f64), f64)> {
        let mut samples = Vec::new();
        let mut totals = 0u64;
        for q in queries {
            let started = Instant::now();
            let found = index.search(q, filters, 0, 100)?;
            samples.push(started.elapsed());
            totals += found.total;
        }
        Ok((percentiles(samples), totals as f64 / queries.len() as f64))
    };
    // Terms of ranks 40-240 (common working words: 0.02-0.2% of words each).
    let terms: Vec<String> = (40..40 + RUNS).map(|r| corpus.words[r].clone()).collect();
    let rare: Vec<String> = (5_000..5_000 + RUNS)
        .map(|r| corpus.words[r].clone())
        .collect();
    let quoted: Vec<String> = phrases.iter().map(|p| format!("\"{p}\"")).collect();
    let prefixes: Vec<String> = (40..40 + RUNS)
        .map(|r| format!("{}*", &corpus.words[r][..3.min(corpus.words[r].len())]))
        .collect();
    let boolean: Vec<String> = (40..40 + RUNS)
        .map(|r| {
            format!(
                "{} OR {} -{}",
                corpus.words[r],
                corpus.words[r + 300],
                corpus.words[30]
            )
        })
        .collect();
    println!("\nquery latency on the index (page of 100 in log order, and the total count); averaged matches");
    println!("| query | p50 ms | p95 ms | matches (mean) |");
    println!("|---|---|---|---|");
    for (name, queries) in [
        ("term (ranks 40-240)", &terms),
        ("rare term (ranks 5,000-5,200)", &rare),
        ("phrase of two words", &quoted),
        ("prefix (3 letters*)", &prefixes),
        ("a OR b -c", &boolean),
    ] {
        let ((p50, p95), mean) = time(&mut index, queries, &filters)?;
        println!("| {name} | {p50:.2} | {p95:.2} | {mean:.0} |");
    }
    // Filtered: a term, two participants who share chats, one month of receipt times.
    let pair: Vec<String> = corpus.chats[0]
        .iter()
        .take(2)
        .map(|u| format!("user{u}"))
        .collect();
    let month = Filters {
        participants: &pair,
        from: Some(START_MS + 31 * 86_400_000),
        to: Some(START_MS + 61 * 86_400_000 - 1),
        ..Filters::default()
    };
    let ((p50, p95), mean) = time(&mut index, &terms, &month)?;
    println!("| term, 2 participants, one month | {p50:.2} | {p95:.2} | {mean:.0} |");
    let chats = vec!["room 7".to_owned(), "chat0008".to_owned()];
    let in_chats = Filters {
        chats: &chats,
        ..Filters::default()
    };
    let ((p50, p95), mean) = time(&mut index, &terms, &in_chats)?;
    println!("| term, 2 chats (by title and id) | {p50:.2} | {p95:.2} | {mean:.0} |");

    // The same term and phrase, timed on the index and with ripgrep over the dump.
    let term = &corpus.words[100];
    let phrase = &phrases[1];
    println!("\nside by side, same run: the index next to `rg --count --ignore-case` over the plaintext dump ({RG_RUNS} runs of rg, {RUNS} of the index)");
    println!("| query | index p50 ms | index p95 ms | rg p50 ms | rg p95 ms | rg / index (p95) | matches index / rg lines |");
    println!("|---|---|---|---|---|---|---|");
    for (name, query, rg_args) in [
        (
            format!("term {term:?}"),
            term.clone(),
            vec!["--word-regexp", "--fixed-strings", term.as_str()],
        ),
        (
            format!("phrase \"{phrase}\""),
            format!("\"{phrase}\""),
            vec!["--word-regexp", "--fixed-strings", phrase.as_str()],
        ),
    ] {
        let queries = vec![query; RUNS];
        let ((p50, p95), mean) = time(&mut index, &queries, &filters)?;
        let ((rg50, rg95), lines) = ripgrep(&rg_args, &dump_path)?;
        ensure!(lines > 0, "rg found nothing for {name}");
        println!(
            "| {name} | {p50:.2} | {p95:.2} | {rg50:.1} | {rg95:.1} | {:.0}x | {mean:.0} / {lines} |",
            rg95 / p95
        );
    }
    Ok(())
}

/// What catch-up after an unseal also does per record: open its sealed body (HPKE and
/// AES-GCM under the records key) and decode it. The actor opens while tantivy's indexing
/// thread indexes, so catch-up runs at about the slower of the two rates.
fn open_rate() -> Result<()> {
    let keys = vellum_records::generate(3, 2, "bench.example/records")?;
    let mut unsealer = vellum_records::Unsealer::new(keys.public.clone());
    unsealer.add(&keys.shares[0])?;
    let vellum_records::UnsealProgress::Unsealed(secret) = unsealer.add(&keys.shares[1])? else {
        anyhow::bail!("two shares did not unseal");
    };
    let public = keys.public.key_bytes()?;
    let mut rng = Rng(7);
    let corpus = Corpus::new(&mut rng);
    let zipf = Zipf::new(VOCABULARY);
    let sealed: Vec<_> = (0..10_000u64)
        .map(|i| {
            let r = corpus.record(i, &mut rng, &zipf);
            let reference = r.reference();
            let s = vellum_records::seal(&public, reference.as_bytes(), &r.encode())?;
            Ok((reference, s))
        })
        .collect::<Result<_>>()?;
    let started = Instant::now();
    for (reference, s) in &sealed {
        let plain = vellum_records::open(&secret, reference.as_bytes(), s)?;
        Record::decode(&plain)?;
    }
    let took = started.elapsed();
    println!(
        "| opening sealed records for catch-up (HPKE + decode, one thread), records/s | {:.0} |",
        sealed.len() as f64 / took.as_secs_f64()
    );
    Ok(())
}
