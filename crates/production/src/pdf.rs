//! The PDF transcripts: one file per chat, a header naming the case and the chat, then each
//! record (time in the office's zone, sender, kind, text wrapped), and a Bates number at the
//! foot of every page, contiguous across the files.
//!
//! A redaction is a filled black box labelled with its exemption, the same width whatever it
//! covers (its width would otherwise hint at the length of what is withheld). Withheld text is
//! never handed to this module: the view gives it only the exemption, so it cannot reach the
//! content streams, a text layer or the metadata. Text is set in the base-14 Helvetica with
//! WinAnsi encoding; a character it cannot show is printed as `?` and the record says how
//! many were (the RSMF holds the exact text).

use std::collections::BTreeMap;
use std::path::Path;

use pdf_writer::{Content, Finish, Name, Pdf, Rect, Ref, Str, TextStr};
use vellum_record::api::foia::Exemption;
use vellum_record::RecordKind;

use crate::view::{Piece, Shown, View};
use crate::{Error, ProductionInput};

const PAGE_W: f32 = 612.0;
const PAGE_H: f32 = 792.0;
const MARGIN: f32 = 54.0;
const TOP: f32 = PAGE_H - MARGIN;
/// Text stops above the footer.
const BOTTOM: f32 = MARGIN + 18.0;
const BODY_SIZE: f32 = 10.0;
const META_SIZE: f32 = 9.0;
const LEADING: f32 = 13.0;
const INDENT: f32 = 14.0;
const BOX_LABEL_SIZE: f32 = 7.0;

/// The Bates numbers each record's lines fall on.
#[derive(Debug, Default, Clone)]
pub(crate) struct Bates {
    /// Leaf to (first, last) Bates number.
    pub by_leaf: BTreeMap<u64, (u64, u64)>,
    first: Option<u64>,
    last: Option<u64>,
}

impl Bates {
    pub(crate) fn first(&self) -> Option<u64> {
        self.first
    }

    pub(crate) fn last(&self) -> Option<u64> {
        self.last
    }
}

pub(crate) struct Written {
    pub files: Vec<String>,
    pub bates: Bates,
}

/// A unit of layout.
#[derive(Debug, Clone)]
enum Token {
    /// WinAnsi bytes and their width at the run's size.
    Word(Vec<u8>, f32),
    Space(f32),
    /// A redaction box with its label.
    Box(String, f32),
}

/// A laid-out line: its tokens, font, size and indent.
struct Line {
    tokens: Vec<Token>,
    bold: bool,
    size: f32,
    indent: f32,
    /// The leaf whose record this line belongs to.
    leaf: Option<u64>,
}

/// Writes one PDF per chat.
pub(crate) fn write(
    input: &ProductionInput,
    views: &[View<'_>],
    zone: &jiff::tz::TimeZone,
    out: &Path,
    tick: &mut dyn FnMut(u64),
) -> Result<Written, Error> {
    let mut chats: Vec<(&str, Vec<&View<'_>>)> = Vec::new();
    for v in views {
        let chat = v.record().chat_id.as_str();
        match chats.iter_mut().find(|(c, _)| *c == chat) {
            Some((_, list)) => list.push(v),
            None => chats.push((chat, vec![v])),
        }
    }
    let mut bates = Bates::default();
    let mut next = input.bates_start;
    let mut files = Vec::new();
    for (n, (chat, list)) in chats.iter().enumerate() {
        let lines = layout_chat(input, chat, list, zone);
        let pages = paginate(lines);
        let name = format!("transcript-{:03}-{}.pdf", n + 1, crate::file_stem(chat));
        let bytes = render(input, &pages, next, &mut bates);
        next += pages.len() as u64;
        crate::write_file(out, &name, &bytes)?;
        files.push(name);
        tick(list.len() as u64);
    }
    Ok(Written { files, bates })
}

fn layout_chat(
    input: &ProductionInput,
    chat: &str,
    list: &[&View<'_>],
    zone: &jiff::tz::TimeZone,
) -> Vec<Line> {
    let width = PAGE_W - 2.0 * MARGIN;
    let mut lines = Vec::new();
    let title = list.iter().rev().find_map(|v| v.chat_title.clone());
    let first = list
        .iter()
        .map(|v| v.record().received_at)
        .min()
        .unwrap_or(0);
    let last = list
        .iter()
        .map(|v| v.record().received_at)
        .max()
        .unwrap_or(0);
    let header = |text: &str, bold: bool, size: f32, lines: &mut Vec<Line>| {
        let mut tokens = Vec::new();
        push_text(&mut tokens, text, size, bold, &mut 0);
        wrap(tokens, width, bold, size, 0.0, None, lines);
    };
    header(
        &format!("Production for case {}", input.case_id),
        true,
        13.0,
        &mut lines,
    );
    let mut chat_line = Vec::new();
    push_text(&mut chat_line, "Chat: ", BODY_SIZE, true, &mut 0);
    match &title {
        Some(t) => push_shown(&mut chat_line, t, BODY_SIZE, true, &mut 0),
        None => push_text(&mut chat_line, "(untitled)", BODY_SIZE, true, &mut 0),
    }
    push_text(
        &mut chat_line,
        &format!(" ({chat})"),
        BODY_SIZE,
        true,
        &mut 0,
    );
    wrap(chat_line, width, true, BODY_SIZE, 0.0, None, &mut lines);
    header(
        &format!(
            "Records from {} to {} ({} records; times in {})",
            crate::readable(first, zone),
            crate::readable(last, zone),
            list.len(),
            input.time_zone
        ),
        false,
        META_SIZE,
        &mut lines,
    );
    lines.push(blank());
    for v in list {
        let r = v.record();
        let leaf = Some(v.item.leaf);
        let mut missing = 0usize;
        let mut meta = Vec::new();
        push_text(
            &mut meta,
            &format!("{}  ", crate::readable(r.received_at, zone)),
            META_SIZE,
            true,
            &mut missing,
        );
        push_shown(&mut meta, &v.sender, META_SIZE, true, &mut missing);
        push_text(
            &mut meta,
            &format!("  [{}, record {}]", r.kind.as_str(), v.item.leaf),
            META_SIZE,
            true,
            &mut missing,
        );
        wrap(meta, width, true, META_SIZE, 0.0, leaf, &mut lines);
        let mut body = Vec::new();
        let s = BODY_SIZE;
        let pieces = v.text.clone().unwrap_or_default();
        match &r.kind {
            RecordKind::Message => push_pieces(&mut body, &pieces, &mut missing),
            RecordKind::Edit => {
                let target = r.target.as_deref().unwrap_or("?");
                push_text(
                    &mut body,
                    &format!("Edited message {target} to: "),
                    s,
                    false,
                    &mut missing,
                );
                push_pieces(&mut body, &pieces, &mut missing);
            }
            RecordKind::Reaction => {
                let verb = if r.remove {
                    "Withdrew reaction"
                } else {
                    "Reacted"
                };
                push_text(&mut body, &format!("{verb} "), s, false, &mut missing);
                push_pieces(&mut body, &pieces, &mut missing);
                let target = r.target.as_deref().unwrap_or("?");
                push_text(
                    &mut body,
                    &format!(" to message {target}"),
                    s,
                    false,
                    &mut missing,
                );
            }
            RecordKind::Delete => push_text(
                &mut body,
                &format!(
                    "Deleted message {} for everyone",
                    r.message_id.as_deref().unwrap_or("?")
                ),
                s,
                false,
                &mut missing,
            ),
            RecordKind::Title => {
                push_text(&mut body, "Set the chat title to: ", s, false, &mut missing);
                push_pieces(&mut body, &pieces, &mut missing);
            }
            RecordKind::Membership | RecordKind::Timers => {
                push_pieces(&mut body, &pieces, &mut missing)
            }
            RecordKind::Attachment(file) => {
                push_text(&mut body, "Attached file ", s, false, &mut missing);
                if let Some(name) = &v.attachment_name {
                    push_shown(&mut body, name, s, false, &mut missing);
                }
                let part = if file.parts > 1 {
                    format!(", part {} of {}", file.part + 1, file.parts)
                } else {
                    String::new()
                };
                push_text(
                    &mut body,
                    &format!(
                        " ({}, {} bytes, SHA-256 {}{part}; the file is in the RSMF)",
                        file.mime, file.size, file.sha256
                    ),
                    s,
                    false,
                    &mut missing,
                );
            }
            RecordKind::Unknown { kind, .. } => push_text(
                &mut body,
                &format!("An event of kind {kind:?} this version of Vellum does not display"),
                s,
                false,
                &mut missing,
            ),
        }
        if !v.recipients.is_empty() {
            let mut to = Vec::new();
            push_text(&mut to, "To: ", META_SIZE, false, &mut missing);
            for (i, who) in v.recipients.iter().enumerate() {
                if i > 0 {
                    push_text(&mut to, ", ", META_SIZE, false, &mut missing);
                }
                push_shown(&mut to, who, META_SIZE, false, &mut missing);
            }
            wrap(body, width - INDENT, false, s, INDENT, leaf, &mut lines);
            body = to;
            if missing > 0 {
                note_missing(&mut body, missing);
            }
            wrap(
                body,
                width - INDENT,
                false,
                META_SIZE,
                INDENT,
                leaf,
                &mut lines,
            );
        } else {
            if missing > 0 {
                note_missing(&mut body, missing);
            }
            wrap(body, width - INDENT, false, s, INDENT, leaf, &mut lines);
        }
        lines.push(blank());
    }
    lines
}

fn note_missing(tokens: &mut Vec<Token>, missing: usize) {
    let mut ignored = 0;
    push_text(
        tokens,
        &format!(" [{missing} character(s) this PDF font cannot show are printed as ?; the RSMF holds the exact text]"),
        META_SIZE,
        false,
        &mut ignored,
    );
}

fn blank() -> Line {
    Line {
        tokens: vec![],
        bold: false,
        size: BODY_SIZE,
        indent: 0.0,
        leaf: None,
    }
}

fn push_pieces(tokens: &mut Vec<Token>, pieces: &[Piece], missing: &mut usize) {
    for p in pieces {
        match p {
            Piece::Text(t) => push_text(tokens, t, BODY_SIZE, false, missing),
            Piece::Redacted(e) => tokens.push(redaction_box(e)),
            // Numbered, as in the withholding log, so a reader can tell people apart.
            Piece::Name { placeholder, .. } => {
                tokens.push(labelled_box(placeholder.trim_matches(['[', ']'])))
            }
        }
    }
}

fn push_shown(tokens: &mut Vec<Token>, shown: &Shown, size: f32, bold: bool, missing: &mut usize) {
    match shown {
        Shown::Plain(t) => push_text(tokens, t, size, bold, missing),
        Shown::Redacted { exemption, .. } => tokens.push(redaction_box(&[*exemption])),
        Shown::Scrubbed { text, .. } => push_text(tokens, text, size, bold, missing),
    }
}

fn redaction_box(exemptions: &[Exemption]) -> Token {
    labelled_box(&crate::view::label(exemptions))
}

fn labelled_box(label: &str) -> Token {
    let width = text_width(&encode(label).0, BOX_LABEL_SIZE, true) + 8.0;
    Token::Box(label.to_owned(), width)
}

/// Splits text into words and spaces (line breaks become spaces: a transcript line wraps).
fn push_text(tokens: &mut Vec<Token>, text: &str, size: f32, bold: bool, missing: &mut usize) {
    let (bytes, unshown) = encode(text);
    *missing += unshown;
    let space = char_width(b' ') * size / 1000.0 * if bold { 1.1 } else { 1.0 };
    let mut word = Vec::new();
    for b in bytes {
        if b == b' ' || b == b'\n' || b == b'\r' || b == b'\t' {
            if !word.is_empty() {
                let w = text_width(&word, size, bold);
                tokens.push(Token::Word(std::mem::take(&mut word), w));
            }
            tokens.push(Token::Space(space));
        } else {
            word.push(b);
        }
    }
    if !word.is_empty() {
        let w = text_width(&word, size, bold);
        tokens.push(Token::Word(word, w));
    }
}

/// Greedy line breaking; a word longer than a line is cut.
fn wrap(
    tokens: Vec<Token>,
    width: f32,
    bold: bool,
    size: f32,
    indent: f32,
    leaf: Option<u64>,
    lines: &mut Vec<Line>,
) {
    let mut line: Vec<Token> = Vec::new();
    let mut used = 0.0;
    let flush = |line: &mut Vec<Token>, lines: &mut Vec<Line>| {
        while matches!(line.last(), Some(Token::Space(_))) {
            line.pop();
        }
        lines.push(Line {
            tokens: std::mem::take(line),
            bold,
            size,
            indent,
            leaf,
        });
    };
    for token in tokens {
        let w = match &token {
            Token::Word(_, w) | Token::Space(w) | Token::Box(_, w) => *w,
        };
        if let Token::Space(_) = token {
            if line.is_empty() {
                continue;
            }
        }
        if used + w > width && !line.is_empty() {
            flush(&mut line, lines);
            used = 0.0;
            if let Token::Space(_) = token {
                continue;
            }
        }
        match token {
            Token::Word(bytes, w) if w > width => {
                // Cut an overlong word into pieces that fit.
                let mut piece = Vec::new();
                let mut pw = 0.0;
                for b in bytes {
                    let cw = text_width(&[b], size, bold);
                    if pw + cw > width - used && !piece.is_empty() {
                        line.push(Token::Word(std::mem::take(&mut piece), pw));
                        flush(&mut line, lines);
                        used = 0.0;
                        pw = 0.0;
                    }
                    piece.push(b);
                    pw += cw;
                }
                used += pw;
                line.push(Token::Word(piece, pw));
            }
            token => {
                used += w;
                line.push(token);
            }
        }
    }
    flush(&mut line, lines);
}

fn paginate(lines: Vec<Line>) -> Vec<Vec<Line>> {
    let per_page = ((TOP - BOTTOM) / LEADING).floor() as usize;
    let mut pages: Vec<Vec<Line>> = Vec::new();
    let mut page = Vec::new();
    for line in lines {
        if page.len() >= per_page {
            pages.push(std::mem::take(&mut page));
        }
        // A blank line does not open a page.
        if page.is_empty() && line.tokens.is_empty() && !pages.is_empty() {
            continue;
        }
        page.push(line);
    }
    if !page.is_empty() || pages.is_empty() {
        pages.push(page);
    }
    pages
}

fn render(input: &ProductionInput, pages: &[Vec<Line>], first: u64, bates: &mut Bates) -> Vec<u8> {
    let mut pdf = Pdf::new();
    let catalog = Ref::new(1);
    let tree = Ref::new(2);
    let regular = Ref::new(3);
    let bold = Ref::new(4);
    let info = Ref::new(5);
    let page_ids: Vec<Ref> = (0..pages.len())
        .map(|i| Ref::new(6 + 2 * i as i32))
        .collect();
    pdf.catalog(catalog).pages(tree);
    pdf.pages(tree)
        .kids(page_ids.iter().copied())
        .count(pages.len() as i32);
    for (font, name) in [(regular, "Helvetica"), (bold, "Helvetica-Bold")] {
        pdf.type1_font(font)
            .base_font(Name(name.as_bytes()))
            .encoding_predefined(Name(b"WinAnsiEncoding"));
    }
    // Only what is public about the production: never a chat title or a name.
    pdf.document_info(info)
        .title(TextStr(&format!("Production for case {}", input.case_id)))
        .producer(TextStr("Vellum"));
    for (i, lines) in pages.iter().enumerate() {
        let number = first + i as u64;
        bates.first.get_or_insert(number);
        bates.last = Some(number);
        let id = page_ids[i];
        let content_id = Ref::new(id.get() + 1);
        let mut page = pdf.page(id);
        page.media_box(Rect::new(0.0, 0.0, PAGE_W, PAGE_H))
            .parent(tree)
            .contents(content_id);
        page.resources()
            .fonts()
            .pair(Name(b"F1"), regular)
            .pair(Name(b"F2"), bold);
        page.finish();
        let mut content = Content::new();
        let mut y = TOP;
        for line in lines {
            if let Some(leaf) = line.leaf {
                let range = bates.by_leaf.entry(leaf).or_insert((number, number));
                range.1 = number;
            }
            draw_line(&mut content, line, y);
            y -= LEADING;
        }
        let label = crate::bates_number(input, number);
        let (label_bytes, _) = encode(&label);
        let w = text_width(&label_bytes, 9.0, true);
        content.set_fill_gray(0.0);
        content
            .begin_text()
            .set_font(Name(b"F2"), 9.0)
            .next_line(PAGE_W - MARGIN - w, MARGIN - 20.0)
            .show(Str(&label_bytes))
            .end_text();
        let (case, _) = encode(&format!("Case {}", input.case_id));
        content
            .begin_text()
            .set_font(Name(b"F1"), 8.0)
            .next_line(MARGIN, MARGIN - 20.0)
            .show(Str(&case))
            .end_text();
        pdf.stream(content_id, &content.finish());
    }
    pdf.finish()
}

fn draw_line(content: &mut Content, line: &Line, y: f32) {
    let mut x = MARGIN + line.indent;
    let font = if line.bold { Name(b"F2") } else { Name(b"F1") };
    let mut run: Vec<u8> = Vec::new();
    let mut run_x = x;
    let flush = |content: &mut Content, run: &mut Vec<u8>, run_x: f32| {
        if !run.is_empty() {
            content.set_fill_gray(0.0);
            content
                .begin_text()
                .set_font(font, line.size)
                .next_line(run_x, y)
                .show(Str(run))
                .end_text();
            run.clear();
        }
    };
    for token in &line.tokens {
        match token {
            Token::Word(bytes, w) => {
                run.extend_from_slice(bytes);
                x += w;
            }
            Token::Space(w) => {
                run.push(b' ');
                x += w;
            }
            Token::Box(label, w) => {
                flush(content, &mut run, run_x);
                content.set_fill_gray(0.0);
                content.rect(x, y - 2.5, *w, line.size + 1.5);
                content.fill_nonzero();
                let (bytes, _) = encode(label);
                content.set_fill_gray(1.0);
                content
                    .begin_text()
                    .set_font(Name(b"F2"), BOX_LABEL_SIZE)
                    .next_line(x + 4.0, y)
                    .show(Str(&bytes))
                    .end_text();
                x += w;
                run_x = x;
            }
        }
    }
    flush(content, &mut run, run_x);
}

/// WinAnsi bytes for `text`, and how many characters had no WinAnsi code (shown as `?`).
fn encode(text: &str) -> (Vec<u8>, usize) {
    let mut missing = 0;
    let bytes = text
        .chars()
        .map(|c| match winansi(c) {
            Some(b) => b,
            None => {
                missing += 1;
                b'?'
            }
        })
        .collect();
    (bytes, missing)
}

fn winansi(c: char) -> Option<u8> {
    let code = c as u32;
    match code {
        0x20..=0x7E | 0xA0..=0xFF => Some(code as u8),
        0x0A | 0x0D | 0x09 => Some(b' '),
        _ => Some(match c {
            '€' => 0x80,
            '‚' => 0x82,
            'ƒ' => 0x83,
            '„' => 0x84,
            '…' => 0x85,
            '†' => 0x86,
            '‡' => 0x87,
            'ˆ' => 0x88,
            '‰' => 0x89,
            'Š' => 0x8A,
            '‹' => 0x8B,
            'Œ' => 0x8C,
            'Ž' => 0x8E,
            '\u{2018}' => 0x91,
            '\u{2019}' => 0x92,
            '\u{201C}' => 0x93,
            '\u{201D}' => 0x94,
            '•' => 0x95,
            '–' => 0x96,
            '—' => 0x97,
            '˜' => 0x98,
            '™' => 0x99,
            'š' => 0x9A,
            '›' => 0x9B,
            'œ' => 0x9C,
            'ž' => 0x9E,
            'Ÿ' => 0x9F,
            _ => return None,
        }),
    }
}

/// Helvetica's advance widths (AFM, per 1000 em) for ASCII; others approximated.
fn char_width(b: u8) -> f32 {
    const ASCII: [u16; 95] = [
        278, 278, 355, 556, 556, 889, 667, 191, 333, 333, 389, 584, 278, 333, 278, 278, 556, 556,
        556, 556, 556, 556, 556, 556, 556, 556, 278, 278, 584, 584, 584, 556, 1015, 667, 667, 722,
        722, 667, 611, 778, 722, 278, 500, 667, 556, 833, 722, 778, 667, 778, 722, 667, 611, 722,
        667, 944, 667, 667, 611, 278, 278, 278, 469, 556, 333, 556, 556, 500, 556, 556, 278, 556,
        556, 222, 222, 500, 222, 833, 556, 556, 556, 556, 333, 500, 278, 556, 500, 722, 500, 500,
        500, 334, 260, 334, 584,
    ];
    match b {
        0x20..=0x7E => ASCII[(b - 0x20) as usize] as f32,
        // Wide glyphs (W, M, Œ, ‰) are the most an approximation may undercount.
        _ => 1000.0,
    }
}

/// The width of WinAnsi `bytes` at `size`; bold is wider, overestimated by 10%.
fn text_width(bytes: &[u8], size: f32, bold: bool) -> f32 {
    let em: f32 = bytes.iter().map(|b| char_width(*b)).sum();
    em * size / 1000.0 * if bold { 1.1 } else { 1.0 }
}
