//! The view drawn into ratatui's TestBackend over real stores: what a person sees and what each
//! key does to it (the table, sorting, filtering, the tree, the chart, resizing, 80x24, NO_COLOR).

mod common;

use std::sync::Arc;

use common::*;
use memtools::analysis::MIB;
use memtools::model::{Metric, NS_PER_SEC};
use memtools_tui::snapshot::CountMetrics;
use memtools_tui::state::{Action, Screen};
use memtools_tui::theme::Theme;
use memtools_tui::worker::Request;
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::style::Color;

fn key(c: char) -> KeyEvent {
    KeyEvent::new(KeyCode::Char(c), KeyModifiers::NONE)
}

fn code(code: KeyCode) -> KeyEvent {
    KeyEvent::new(code, KeyModifiers::NONE)
}

#[test]
fn the_table_shows_each_process_largest_growth_first_with_its_verdict_and_history() {
    let t = TestStore::new();
    let _w = four_processes(&t);
    let mut f = followed(&t);
    let mut v = view(&mut f, COLOR);
    let screen = draw(&mut terminal(100, 30), &mut v);
    let text = screen.join("\n");
    // The header: session, state, backend and interval, store; metric and counts; command.
    assert!(
        screen[0].starts_with("session 1 · recording 59 s · procfs every 1 s"),
        "{text}"
    );
    assert!(
        screen[1].contains("rss · 4 processes, 4 running · 240 samples"),
        "{text}"
    );
    assert!(screen[1].contains("1 leak, 3 ok, 0 insufficient"), "{text}");
    assert!(screen[2].starts_with("pytest -x tests/"), "{text}");
    for heading in [
        "PID",
        "NAME",
        "RSS",
        "GROWTH↓",
        "SLOPE",
        "THR",
        "FDS",
        "VERDICT",
        "HISTORY",
    ] {
        assert!(screen[3].contains(heading), "{heading} in {}", screen[3]);
    }
    assert_eq!(names(&screen), ["leaky", "helper", "wobbly", "steady"]);
    let leaky = line_of(&screen, "leaky");
    for cell in ["100", "69 MiB", "+59 MiB", "leak"] {
        assert!(leaky.contains(cell), "{cell} in {leaky}");
    }
    // It grew 1 MiB a second: the slope is shown whole, with its sign, within 3 % of that.
    let words: Vec<&str> = leaky.split_whitespace().collect();
    let at = words
        .iter()
        .position(|w| w.ends_with("iB/s"))
        .unwrap_or_else(|| panic!("a slope in {leaky}"));
    let number: f64 = words[at - 1]
        .strip_prefix('+')
        .unwrap_or_else(|| panic!("a signed slope in {leaky}"))
        .parse()
        .unwrap_or_else(|e| panic!("{e}: {leaky}"));
    let per_mib = match words[at] {
        "MiB/s" => 1.0,
        "KiB/s" => 1.0 / 1024.0,
        unit => panic!("{unit} in {leaky}"),
    };
    assert!((number * per_mib - 1.0).abs() < 0.03, "{leaky}");
    // Its history rises from the lowest block to the highest; a flat one stays at the lowest.
    assert!(
        leaky.trim_end().ends_with('█') && leaky.contains('▁'),
        "{leaky}"
    );
    let steady = line_of(&screen, "steady");
    assert!(
        steady.contains(" ok ") && steady.trim_end().ends_with("▁▁▁"),
        "{steady}"
    );
    // This build records thread and fd counts, but this session stored none: `-`.
    assert_eq!(
        CountMetrics::of_model(),
        CountMetrics {
            threads: Some(Metric::Threads),
            fds: Some(Metric::Fds)
        }
    );
    for (heading, text) in [
        ("THR", "-"),
        ("FDS", "-"),
        ("VERDICT", "ok"),
        ("SLOPE", "0 B/s"),
    ] {
        assert_eq!(
            cell(&screen, "steady", heading),
            text,
            "{heading} in {steady}"
        );
    }
}

#[test]
fn thread_and_fd_columns_show_the_stored_counts_when_the_session_has_them() {
    // A session recorded with counts (issue 14): the columns read `threads` and `fds` through
    // `Metric`, the latest stored value of each, and picking `fds` judges it as a count.
    let t = TestStore::new();
    let mut w = t.store.begin_session(&session(T0)).expect("a session");
    let server = w
        .add_process(&process(100, Some(1), "server"), None)
        .unwrap();
    let pool = w.add_process(&process(200, Some(1), "pool"), None).unwrap();
    for i in 0..60i64 {
        for (id, threads, fds) in [
            (server, 3, 12 + 9 * i as u64),
            (pool, 1 + i.min(8) as u64, 5),
        ] {
            let mut s = sample(T0 + i * NS_PER_SEC, 20 * MIB);
            s.metrics.threads = Some(threads);
            s.metrics.fds = Some(fds);
            w.add_sample(id, &s).expect("a sample");
        }
    }
    w.flush().expect("a flush");
    let mut f = followed(&t);
    let screen = draw(&mut terminal(100, 30), &mut view(&mut f, COLOR));
    assert_eq!(cell(&screen, "server", "THR"), "3");
    assert_eq!(cell(&screen, "server", "FDS"), "543");
    assert_eq!(cell(&screen, "pool", "THR"), "9");
    assert_eq!(cell(&screen, "pool", "FDS"), "5");

    // On `fds` the value column counts descriptors, not bytes.
    let mut f = memtools_tui::follow::Follower::new(
        &t.path(),
        memtools::store::SessionSelector::Latest,
        Some(Metric::Fds),
    );
    judge(&mut f);
    let screen = draw(&mut terminal(100, 30), &mut view(&mut f, COLOR));
    let server = line_of(&screen, "server");
    assert!(
        server.contains(" 543 ") && server.contains("+531"),
        "{server}"
    );
    assert!(
        !server.contains("B/s") && !server.contains("MiB"),
        "{server}"
    );
    assert!(server.contains("leak"), "{}", screen.join("\n"));
}

#[test]
fn each_column_sorts_and_the_same_key_again_reverses() {
    let t = TestStore::new();
    let _w = four_processes(&t);
    let mut f = followed(&t);
    let mut v = view(&mut f, COLOR);
    let mut term = terminal(100, 30);
    v.key(key('1'));
    assert_eq!(
        names(&draw(&mut term, &mut v)),
        ["wobbly", "steady", "helper", "leaky"]
    );
    v.key(key('1'));
    assert_eq!(
        names(&draw(&mut term, &mut v)),
        ["leaky", "helper", "steady", "wobbly"]
    );
    // Names sort A to Z first.
    v.key(key('2'));
    let screen = draw(&mut term, &mut v);
    assert_eq!(names(&screen), ["helper", "leaky", "steady", "wobbly"]);
    assert!(screen[3].contains("NAME↑"), "{}", screen[3]);
    // Current value, largest first; `r` reverses whatever the column.
    v.key(key('3'));
    assert_eq!(
        names(&draw(&mut term, &mut v)),
        ["leaky", "wobbly", "steady", "helper"]
    );
    v.key(key('r'));
    assert_eq!(
        names(&draw(&mut term, &mut v)),
        ["helper", "steady", "wobbly", "leaky"]
    );
    // Slope (the verdict's evidence), then the verdict: leaks first.
    v.key(key('5'));
    assert_eq!(names(&draw(&mut term, &mut v))[0], "leaky");
    v.key(key('8'));
    assert_eq!(names(&draw(&mut term, &mut v))[0], "leaky");
    // `<` and `>` step through the columns: from the verdict, `>` wraps round to the pid.
    v.key(key('>'));
    let screen = draw(&mut term, &mut v);
    assert!(screen[3].starts_with("PID↓"), "{}", screen[3]);
    v.key(key('<'));
    assert!(draw(&mut term, &mut v)[3].contains("VERDICT↓"));
}

#[test]
fn a_filter_keeps_the_processes_whose_name_matches() {
    let t = TestStore::new();
    let _w = four_processes(&t);
    let mut f = followed(&t);
    let mut v = view(&mut f, COLOR);
    let mut term = terminal(100, 30);
    v.key(key('/'));
    for c in "LEA".chars() {
        v.key(key(c));
    }
    let screen = draw(&mut term, &mut v);
    assert_eq!(names(&screen), ["leaky"]);
    // While typing, the footer shows the filter; `q` is a letter then, not quit.
    assert!(screen[29].starts_with("filter: LEA_"), "{}", screen[29]);
    assert_eq!(v.key(key('q')), Action::None);
    assert_eq!(names(&draw(&mut term, &mut v)), Vec::<String>::new());
    v.key(code(KeyCode::Backspace));
    v.key(code(KeyCode::Enter));
    let screen = draw(&mut term, &mut v);
    assert_eq!(names(&screen), ["leaky"]);
    assert!(screen[2].contains("filter \"LEA\""), "{}", screen[2]);
    // A pid matches too; Esc clears.
    v.key(code(KeyCode::Esc));
    v.key(key('/'));
    for c in "200".chars() {
        v.key(key(c));
    }
    v.key(code(KeyCode::Enter));
    assert_eq!(names(&draw(&mut term, &mut v)), ["steady"]);
    v.key(code(KeyCode::Esc));
    assert_eq!(names(&draw(&mut term, &mut v)).len(), 4);
}

#[test]
fn following_a_tree_shows_a_process_and_its_descendants_only() {
    let t = TestStore::new();
    let mut w = four_processes(&t);
    // A grandchild, and an unrelated process that reuses pid 100's ppid-less slot later.
    let grandchild = w
        .add_process(&process(102, Some(101), "worker"), None)
        .unwrap();
    write(&mut w, grandchild, 0, 30, |_| 3 << 20);
    let mut f = followed(&t);
    let mut v = view(&mut f, COLOR);
    let mut term = terminal(100, 30);
    // The leak is selected first (largest growth); `t` follows its tree.
    assert_eq!(v.selected().map(|r| r.pid), Some(100));
    v.key(key('t'));
    let screen = draw(&mut term, &mut v);
    assert_eq!(names(&screen), ["leaky", "helper", "worker"]);
    assert!(screen[2].contains("tree of 100 leaky"), "{}", screen[2]);
    // From the child down: it and its own child.
    v.key(key('t'));
    v.key(code(KeyCode::Down));
    v.key(key('t'));
    assert_eq!(names(&draw(&mut term, &mut v)), ["helper", "worker"]);
    v.key(code(KeyCode::Esc));
    assert_eq!(names(&draw(&mut term, &mut v)).len(), 5);
}

#[test]
fn the_chart_draws_a_history_with_its_verdicts_evidence() {
    let t = TestStore::new();
    let _w = four_processes(&t);
    let mut f = followed(&t);
    let mut v = view(&mut f, COLOR);
    let mut term = terminal(100, 30);
    // Enter opens the selected process's chart and asks the follower for its whole history.
    assert_eq!(
        v.key(code(KeyCode::Enter)),
        Action::Request(Request::Focus(Some(1)))
    );
    assert_eq!(v.screen, Screen::Chart);
    let waiting = draw(&mut term, &mut v).join("\n");
    assert!(waiting.contains("reading the history"), "{waiting}");
    f.set_focus(Some(1));
    v.update(snapshot(&mut f));
    let screen = draw(&mut term, &mut v);
    let text = screen.join("\n");
    assert!(
        screen[3].starts_with("leaky (pid 100) · running · rss 69 MiB · +59 MiB"),
        "{text}"
    );
    let braille = text
        .chars()
        .filter(|c| ('\u{2801}'..='\u{28ff}').contains(c))
        .count();
    assert!(braille > 40, "{braille} braille cells in\n{text}");
    // Axes: the session's time and the metric's units.
    assert!(text.contains("69 MiB") || text.contains("72 MiB"), "{text}");
    assert!(text.contains("0 s") && text.contains("59 s"), "{text}");
    // The evidence in words, as `detect` gives it, and its numbers.
    assert!(text.contains("LEAK  grew"), "{text}");
    assert!(
        text.contains("detector lbr")
            || text.contains("detector trend")
            || text.contains("detector envelope"),
        "{text}"
    );
    assert!(text.contains("limit 2 GiB (the recording"), "{text}");
    // The legend names both lines.
    assert!(text.contains("rss") && text.contains("fit ("), "{text}");
    // Block drawing instead of braille.
    v.key(key('b'));
    let text = draw(&mut term, &mut v).join("\n");
    assert!(
        !text.chars().any(|c| ('\u{2801}'..='\u{28ff}').contains(&c)),
        "{text}"
    );
    assert!(
        text.contains('▀') || text.contains('▄') || text.contains('█'),
        "{text}"
    );
    // Down moves to the next process's chart; Esc goes back to the table.
    assert_eq!(
        v.key(code(KeyCode::Down)),
        Action::Request(Request::Focus(Some(4)))
    );
    assert_eq!(
        v.key(code(KeyCode::Esc)),
        Action::Request(Request::Focus(None))
    );
    assert_eq!(v.screen, Screen::Table);
}

#[test]
fn a_resize_redraws_at_the_new_size_and_a_tiny_terminal_is_told_so() {
    let t = TestStore::new();
    let _w = four_processes(&t);
    let mut f = followed(&t);
    let mut v = view(&mut f, COLOR);
    let mut term = terminal(140, 40);
    let wide = draw(&mut term, &mut v);
    assert_eq!(wide.len(), 40);
    term.backend_mut().resize(80, 24);
    let screen = draw(&mut term, &mut v);
    assert_eq!((screen.len(), screen[0].chars().count()), (24, 80));
    assert_eq!(names(&screen), ["leaky", "helper", "wobbly", "steady"]);
    assert!(screen[23].starts_with("q quit"), "{}", screen[23]);
    term.backend_mut().resize(30, 6);
    let tiny = draw(&mut term, &mut v).join("");
    assert!(tiny.contains("terminal too small: 30x6"), "{tiny}");
}

#[test]
fn everything_fits_in_80x24_and_the_selection_stays_in_sight() {
    let t = TestStore::new();
    let mut w = t.store.begin_session(&session(T0)).unwrap();
    // More processes than lines.
    for pid in 1000..1040u32 {
        let id = w
            .add_process(&process(pid, Some(1), &format!("p{pid}")), None)
            .unwrap();
        write(&mut w, id, 0, 25, |i| {
            u64::from(pid) * 4096 + i as u64 * u64::from(pid - 999) * 1024
        });
    }
    let mut f = followed(&t);
    let mut v = view(&mut f, COLOR);
    let mut term = terminal(80, 24);
    let screen = draw(&mut term, &mut v);
    for heading in [
        "PID",
        "NAME",
        "RSS",
        "GROWTH↓",
        "SLOPE",
        "THR",
        "FDS",
        "VERDICT",
        "HISTORY",
    ] {
        assert!(screen[3].contains(heading), "{heading} in {}", screen[3]);
    }
    // 24 lines: 3 of header, the headings, 19 processes, the footer.
    assert_eq!(names(&screen).len(), 19);
    assert_eq!(names(&screen)[0], "p1039");
    // Paging down keeps the selection on screen.
    v.key(code(KeyCode::End));
    let screen = draw(&mut term, &mut v);
    assert_eq!(names(&screen).last().map(String::as_str), Some("p1000"));
    assert_eq!(v.selected().map(|r| r.pid), Some(1000));
    v.key(code(KeyCode::PageUp));
    let screen = draw(&mut term, &mut v);
    assert!(names(&screen).contains(&format!("p{}", v.selected().unwrap().pid)));
    // The chart and the help fit too.
    v.key(code(KeyCode::Enter));
    let chart = draw(&mut term, &mut v);
    assert!(chart[3].starts_with("p10"), "{}", chart[3]);
    v.key(key('?'));
    let help = draw(&mut term, &mut v).join("\n");
    assert!(
        help.contains("follow the selected process's tree"),
        "{help}"
    );
}

#[test]
fn no_color_draws_with_bold_dim_and_reverse_only() {
    let t = TestStore::new();
    let _w = four_processes(&t);
    let mut f = followed(&t);
    let plain = Theme {
        color: false,
        unicode: true,
    };
    let colours = |term: &ratatui::Terminal<ratatui::backend::TestBackend>| {
        term.backend()
            .buffer()
            .content
            .iter()
            .filter(|c| c.fg != Color::Reset || c.bg != Color::Reset)
            .count()
    };
    let mut term = terminal(80, 24);
    draw(&mut term, &mut view(&mut f, COLOR));
    assert!(colours(&term) > 0, "the coloured view has colours");
    let mut v = view(&mut f, plain);
    let screen = draw(&mut term, &mut v);
    assert_eq!(colours(&term), 0);
    // The selected line still stands out, by reverse video.
    let row = &term.backend().buffer().content[4 * 80 + 2];
    assert!(
        row.modifier.contains(ratatui::style::Modifier::REVERSED),
        "{row:?}"
    );
    assert_eq!(names(&screen)[0], "leaky");
    v.key(code(KeyCode::Enter));
    f.set_focus(Some(1));
    v.update(snapshot(&mut f));
    draw(&mut term, &mut v);
    assert_eq!(colours(&term), 0, "the chart has no colour either");
}

#[test]
fn without_a_utf8_locale_the_view_draws_in_ascii() {
    let t = TestStore::new();
    let _w = four_processes(&t);
    let mut f = followed(&t);
    let ascii = Theme {
        color: false,
        unicode: false,
    };
    let mut v = view(&mut f, ascii);
    let mut term = terminal(80, 24);
    let text = draw(&mut term, &mut v).join("\n");
    assert!(text.is_ascii(), "{text}");
    assert!(line_of(&text.lines().map(String::from).collect::<Vec<_>>(), "leaky").ends_with('#'));
    v.key(code(KeyCode::Enter));
    f.set_focus(Some(1));
    v.update(snapshot(&mut f));
    let text = draw(&mut term, &mut v).join("\n");
    assert!(text.is_ascii(), "{text}");
}

#[test]
fn metric_keys_ask_for_the_next_metric_and_the_view_shows_it() {
    let t = TestStore::new();
    let _w = four_processes(&t);
    let mut f = followed(&t);
    let mut v = view(&mut f, COLOR);
    assert_eq!(
        v.key(key('m')),
        Action::Request(Request::Metric(Metric::RssAnon))
    );
    // Back from the first wraps to the last: open descriptors.
    assert_eq!(
        v.key(key('M')),
        Action::Request(Request::Metric(Metric::Fds))
    );
    f.set_metric(Metric::PageFaults);
    judge(&mut f);
    v.update(Arc::new(f.snapshot()));
    let screen = draw(&mut terminal(100, 30), &mut v);
    assert!(screen[1].starts_with("page_faults"), "{}", screen[1]);
    assert!(screen[3].contains("PAGE_FAU"), "{}", screen[3]);
    // Counts, not bytes: 69 MiB made 138 faults.
    let leaky = line_of(&screen, "leaky");
    assert!(leaky.contains(" 138 ") && leaky.contains("+118"), "{leaky}");
}

#[test]
fn ctrl_c_interrupts_and_q_quits_from_every_screen() {
    let t = TestStore::new();
    let _w = four_processes(&t);
    let mut f = followed(&t);
    let mut v = view(&mut f, COLOR);
    let ctrl_c = KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL);
    assert_eq!(v.key(ctrl_c), Action::Interrupt);
    v.key(code(KeyCode::Enter));
    assert_eq!(v.key(ctrl_c), Action::Interrupt);
    assert_eq!(v.key(key('q')), Action::Quit);
    v.key(key('/'));
    assert_eq!(v.key(ctrl_c), Action::Interrupt);
}

#[test]
fn the_selection_stays_on_the_top_line_until_a_process_is_picked() {
    let t = TestStore::new();
    let mut w = four_processes(&t);
    let mut f = followed(&t);
    let mut v = view(&mut f, COLOR);
    assert_eq!(v.selected().map(|r| &*r.name), Some("leaky"));
    // The steady service jumps to the top: the selection is the top line, now it.
    write(&mut w, 2, 60, 1, |_| 500 * MIB);
    judge(&mut f);
    v.update(snapshot(&mut f));
    assert_eq!(v.selected().map(|r| &*r.name), Some("steady"));
    // Picked by hand, a process keeps the selection wherever it moves.
    v.key(code(KeyCode::Down));
    assert_eq!(v.selected().map(|r| &*r.name), Some("leaky"));
    write(&mut w, 4, 60, 1, |_| 900 * MIB);
    judge(&mut f);
    v.update(snapshot(&mut f));
    let screen = draw(&mut terminal(100, 30), &mut v);
    assert_eq!(names(&screen)[..2], ["helper", "steady"]);
    assert_eq!(v.selected().map(|r| &*r.name), Some("leaky"));
}

#[test]
fn the_chart_draws_the_line_the_detector_fitted() {
    let t = TestStore::new();
    let _w = four_processes(&t);
    let mut f = followed(&t);
    // The leak's line: where the pipeline put it, not a guess from the last value.
    let s = f.snapshot();
    let leaky = s.rows.iter().find(|r| r.pid == 100).unwrap();
    let judged = leaky.judged.as_ref().unwrap();
    let [(t0, y0), (t1, y1)] = judged.line.expect("a fitted line");
    let e = judged.evidence.unwrap();
    assert!(t0 < t1 && y0 < y1, "{:?}", judged.line);
    assert!(((y1 - y0) / ((t1 - t0) as f64 / 1e9) - e.slope_bytes_per_s).abs() < 1.0);
    // A flat service's envelope line lies on its level.
    let steady = s.rows.iter().find(|r| r.pid == 200).unwrap();
    let [(_, a), (_, b)] = steady.judged.as_ref().unwrap().line.expect("a line");
    assert!(
        (a - 20.0 * MIB as f64).abs() < 1.0 && (b - 20.0 * MIB as f64).abs() < 1.0,
        "{a} {b}"
    );
}
