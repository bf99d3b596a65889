//! The live view of `oomguard top` (ratatui + crossterm): header lines for memory, swap and
//! PSI with the distance to the daemon's levels, the ranked table, keys to sort, filter, switch
//! scope, group and quit.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use ratatui::Frame;
use ratatui::crossterm::event::{self, Event, KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use ratatui::layout::{Constraint, Layout};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Row, Table, TableState};

use super::{Predict, SortKey, TopArgs, filtered, level_spec, read_psi, where_of};
use crate::decide::rank::{self, GroupBy, Ranker, Snapshot, Verdict};
use crate::decide::trigger::Levels;
use crate::sense::Root;
use crate::sense::psi::Pressure;
use crate::sense::scope::Scope;
use crate::values::ScopeSpec;
use crate::values::human_kb;

enum Input {
    Normal,
    Filter,
    Scope(String),
}

struct App {
    p: Predict,
    snap: Option<Snapshot>,
    levels: Levels,
    psi: Option<Pressure>,
    sort: SortKey,
    filter: String,
    group: Option<GroupBy>,
    input: Input,
    status: String,
    selected: usize,
    color: bool,
    interval: Duration,
    rows_limit: Option<usize>,
    /// Table rows on screen at the last draw.
    height: usize,
}

#[derive(PartialEq)]
enum Step {
    Go,
    Refresh,
    Quit,
}

pub fn run(p: Predict, args: &TopArgs, interval: Duration) -> anyhow::Result<ExitCode> {
    let mut app = App {
        p,
        snap: None,
        levels: Levels::default(),
        psi: None,
        sort: args.sort,
        filter: args.filter.clone().unwrap_or_default(),
        group: args.group,
        input: Input::Normal,
        status: String::new(),
        selected: 0,
        color: std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()),
        interval,
        rows_limit: args.rows,
        height: 50,
    };
    // SIGINT, SIGTERM and SIGHUP (`kill`, `timeout`, a closed terminal) end the view like `q`:
    // the terminal is restored. Killed by their default action instead, `top` left the
    // terminal in raw mode on the alternate screen. (Ctrl-C at the keyboard is a key in raw
    // mode, see `App::key`.)
    crate::cli::interrupt::catch();
    let mut terminal = match ratatui::try_init() {
        Ok(t) => t,
        Err(e) => {
            // Raw mode may be on already (the alternate screen is what failed).
            ratatui::restore();
            return Err(e.into());
        }
    };
    let result = app.main_loop(&mut terminal);
    ratatui::restore();
    result?;
    Ok(ExitCode::SUCCESS)
}

/// The longest the live view waits for a key before it looks at the signal flag.
const SIGNAL_LOOK: Duration = Duration::from_millis(100);

impl App {
    fn main_loop(&mut self, terminal: &mut ratatui::DefaultTerminal) -> anyhow::Result<()> {
        let mut next = Instant::now();
        let mut dirty = true;
        loop {
            if crate::cli::interrupt::interrupted() {
                return Ok(());
            }
            let now = Instant::now();
            if now >= next {
                self.refresh();
                next = now + self.interval;
                dirty = true;
            }
            if dirty {
                terminal.draw(|f| self.draw(f))?;
                dirty = false;
            }
            // crossterm's poll resumes after a signal: it is looked for between shorter polls.
            let timeout = next
                .saturating_duration_since(Instant::now())
                .min(SIGNAL_LOOK);
            if event::poll(timeout)? {
                match event::read()? {
                    Event::Key(k) if k.kind != KeyEventKind::Release => match self.key(k) {
                        Step::Quit => return Ok(()),
                        Step::Refresh => next = Instant::now(),
                        Step::Go => {}
                    },
                    Event::Resize(..) => {}
                    _ => continue,
                }
                dirty = true;
            }
        }
    }

    fn refresh(&mut self) {
        // Every process is read in full as soon as its size or resident pages (statm, every
        // refresh) or its oom_score_adj (every refresh on screen, every 5 off screen) change,
        // and every 30 refreshes anyway.
        let mut on_screen = Vec::new();
        if let Some(snap) = &self.snap {
            let mut v = filtered(snap, Some(&self.filter));
            self.sort.apply(&mut v);
            on_screen.extend(v.iter().take(self.selected + self.height).map(|p| p.pid));
        }
        self.p.ranker.watched = on_screen;
        self.p.ranker.full_every = 5;
        match self.p.ranker.snapshot() {
            Ok(s) => {
                self.levels = level_spec(&self.p.config).resolve(&s.memory);
                self.psi = read_psi(&self.p.ranker.scope);
                let notes = s.unreadable.notes();
                if !notes.is_empty() && self.status.is_empty() {
                    self.status = notes.join("; ");
                }
                self.snap = Some(s);
            }
            Err(e) => self.status = format!("refresh failed: {e}"),
        }
    }

    fn switch_scope(&mut self, text: &str) -> Result<(), String> {
        let spec: ScopeSpec = text.trim().parse().map_err(|e| format!("{e}"))?;
        let root = Root::default();
        let scope = Scope::resolve(&root, &spec).map_err(|e| e.to_string())?;
        let mut r =
            Ranker::new(&root, scope, self.p.ranker.policy.clone()).map_err(|e| e.to_string())?;
        r.kernel_threads = self.p.ranker.kernel_threads;
        self.p.ranker = r;
        self.selected = 0;
        Ok(())
    }

    fn key(&mut self, k: KeyEvent) -> Step {
        if k.modifiers.contains(KeyModifiers::CONTROL) && k.code == KeyCode::Char('c') {
            return Step::Quit;
        }
        match &mut self.input {
            Input::Filter => match k.code {
                KeyCode::Enter => self.input = Input::Normal,
                KeyCode::Esc => {
                    self.filter.clear();
                    self.input = Input::Normal;
                }
                KeyCode::Backspace => {
                    self.filter.pop();
                }
                KeyCode::Char(c) => {
                    self.filter.push(c);
                    self.selected = 0;
                }
                _ => {}
            },
            Input::Scope(text) => match k.code {
                KeyCode::Enter => {
                    let t = text.clone();
                    self.input = Input::Normal;
                    self.status = match self.switch_scope(&t) {
                        Ok(()) => format!("scope {}", self.p.ranker.scope.label()),
                        Err(e) => format!("cannot switch scope: {e}"),
                    };
                    return Step::Refresh;
                }
                KeyCode::Esc => self.input = Input::Normal,
                KeyCode::Backspace => {
                    text.pop();
                }
                KeyCode::Char(c) => text.push(c),
                _ => {}
            },
            Input::Normal => match k.code {
                KeyCode::Char('q') | KeyCode::Esc => return Step::Quit,
                KeyCode::Char('s') => {
                    self.sort = self.sort.next();
                    self.selected = 0;
                }
                KeyCode::Char('/') => {
                    self.input = Input::Filter;
                    self.status.clear();
                }
                KeyCode::Char('c') => {
                    // Prefilled with the selected process's cgroup, or system.
                    let sel = self.visible_cgroup();
                    let text = match (sel, self.p.ranker.scope.cgroup()) {
                        (_, Some(_)) => "system".to_string(),
                        (Some(cg), None) => format!("cgroup:{cg}"),
                        (None, None) => "system".to_string(),
                    };
                    self.input = Input::Scope(text);
                    self.status.clear();
                }
                KeyCode::Char('g') => {
                    self.group = match self.group {
                        None => Some(GroupBy::Tree),
                        Some(GroupBy::Tree) => Some(GroupBy::Cgroup),
                        Some(GroupBy::Cgroup) => Some(GroupBy::Unit),
                        Some(GroupBy::Unit) => None,
                    };
                    self.selected = 0;
                }
                KeyCode::Char('r') => return Step::Refresh,
                KeyCode::Down | KeyCode::Char('j') => self.selected += 1,
                KeyCode::Up | KeyCode::Char('k') => self.selected = self.selected.saturating_sub(1),
                KeyCode::PageDown => self.selected += 20,
                KeyCode::PageUp => self.selected = self.selected.saturating_sub(20),
                KeyCode::Home => self.selected = 0,
                _ => {}
            },
        }
        Step::Go
    }

    fn visible_cgroup(&self) -> Option<String> {
        let snap = self.snap.as_ref()?;
        let mut v = filtered(snap, Some(&self.filter));
        self.sort.apply(&mut v);
        v.get(self.selected).and_then(|p| p.cgroup.clone())
    }

    fn style(&self, c: Color) -> Style {
        if self.color {
            Style::new().fg(c)
        } else {
            Style::new()
        }
    }

    fn bar(&self, label: &str, used: f64, text: String, warn: bool) -> Line<'static> {
        const W: usize = 20;
        let used = used.clamp(0.0, 1.0);
        let n = (used * W as f64).round() as usize;
        let colour = if warn { Color::Red } else { Color::Green };
        Line::from(vec![
            Span::raw(format!("{label:<5}[")),
            Span::styled("#".repeat(n), self.style(colour)),
            Span::raw(".".repeat(W - n)),
            Span::raw(format!("] {text}")),
        ])
    }

    fn header(&self) -> Vec<Line<'static>> {
        let Some(snap) = &self.snap else {
            return vec![Line::raw("reading…")];
        };
        let m = &snap.memory;
        let l = &self.levels;
        let above = m.available_kb as i64 - l.mem_term_kb as i64;
        let title = Line::from(vec![
            Span::styled("oomguard top", Style::new().add_modifier(Modifier::BOLD)),
            Span::raw(format!(
                " · scope {} · {} processes · totalpages {} · sort {} · every {:.1}s",
                snap.scope,
                crate::decide::explain_rank::process_count(snap),
                snap.ctx.totalpages,
                self.sort.as_str(),
                self.interval.as_secs_f64()
            )),
        ]);
        let mem = self.bar(
            "mem",
            1.0 - m.available_kb as f64 / m.total_kb.max(1) as f64,
            format!(
                "{} available of {} · SIGTERM at {} ({} {}) · SIGKILL at {}",
                human_kb(m.available_kb),
                human_kb(m.total_kb),
                human_kb(l.mem_term_kb),
                human_kb(above.unsigned_abs()),
                if above >= 0 { "above" } else { "BELOW" },
                human_kb(l.mem_kill_kb),
            ),
            above < 0,
        );
        let swap = if m.swap_total_kb == 0 {
            Line::raw("swap [no swap: memory alone triggers the daemon]")
        } else {
            let sa = m.swap_free_kb as i64 - l.swap_term_kb as i64;
            self.bar(
                "swap",
                1.0 - m.swap_free_kb as f64 / m.swap_total_kb as f64,
                format!(
                    "{} free of {} · SIGTERM at {} ({} {})",
                    human_kb(m.swap_free_kb),
                    human_kb(m.swap_total_kb),
                    human_kb(l.swap_term_kb),
                    human_kb(sa.unsigned_abs()),
                    if sa >= 0 { "above" } else { "BELOW" }
                ),
                sa < 0,
            )
        };
        let psi = match &self.psi {
            None => Line::raw("psi  [not available for this scope]"),
            Some(p) => {
                let limit = self.p.config.run.psi;
                let text = format!(
                    "some {:.2}% · full {:.2}% (avg10){}",
                    p.some_avg10,
                    p.full_avg10,
                    limit.map_or_else(
                        || " · no PSI level set (run --psi)".to_string(),
                        |s| format!(" · daemon acts at {} {}%", s.kind.as_str(), s.pct.0)
                    )
                );
                let warn = limit.is_some_and(|s| {
                    let v = match s.kind {
                        crate::values::PsiKind::Some => p.some_avg10,
                        crate::values::PsiKind::Full => p.full_avg10,
                    };
                    v >= s.pct.0
                });
                self.bar("psi", p.some_avg10 / 100.0, text, warn)
            }
        };
        vec![title, mem, swap, psi]
    }

    fn draw(&mut self, f: &mut Frame) {
        let [head, body, foot] = Layout::vertical([
            Constraint::Length(4),
            Constraint::Min(3),
            Constraint::Length(1),
        ])
        .areas(f.area());
        f.render_widget(Paragraph::new(self.header()), head);
        let height = body.height.saturating_sub(1) as usize;
        self.height = height;
        match self.group {
            None => self.draw_procs(f, body, height),
            Some(by) => self.draw_groups(f, body, height, by),
        }
        let footer = match &self.input {
            Input::Filter => format!("filter name: {}_   (Enter keep, Esc clear)", self.filter),
            Input::Scope(t) => {
                format!("scope (system or cgroup:PATH): {t}_   (Enter switch, Esc cancel)")
            }
            Input::Normal => format!(
                "q quit · s sort · / filter{} · c scope · g group{} · ↑↓ select   {}",
                if self.filter.is_empty() {
                    String::new()
                } else {
                    format!(" [{}]", self.filter)
                },
                self.group.map_or(String::new(), |g| format!(
                    " [{}]",
                    serde_json::to_value(g)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_string))
                        .unwrap_or_default()
                )),
                self.status
            ),
        };
        f.render_widget(
            Paragraph::new(footer).style(Style::new().add_modifier(Modifier::REVERSED)),
            foot,
        );
    }

    fn draw_procs(&mut self, f: &mut Frame, area: ratatui::layout::Rect, height: usize) {
        let Some(snap) = &self.snap else { return };
        let mut v = filtered(snap, Some(&self.filter));
        self.sort.apply(&mut v);
        if let Some(n) = self.rows_limit {
            v.truncate(n);
        }
        self.selected = self.selected.min(v.len().saturating_sub(1));
        let offset = (self.selected + 1).saturating_sub(height.max(1));
        let pk = snap.ctx.page_kb;
        let rows = v.iter().skip(offset).take(height).map(|p| {
            let vs = match p.verdict {
                Verdict::NextVictim => self.style(Color::Red).add_modifier(Modifier::BOLD),
                Verdict::Protected | Verdict::Immune => self.style(Color::Cyan),
                Verdict::Preferred => self.style(Color::Yellow),
                Verdict::Avoided => self.style(Color::Blue),
                Verdict::Candidate => Style::new(),
            };
            Row::new(vec![
                p.rank.to_string().into(),
                p.pid.to_string().into(),
                crate::values::escape_text(&self.p.users.name(p.uid))
                    .into_owned()
                    .into(),
                crate::values::escape_text(&p.comm.to_string_lossy())
                    .into_owned()
                    .into(),
                human_kb(p.rss_kb(pk)).into(),
                human_kb(p.swap_kb(pk)).into(),
                p.adj.to_string().into(),
                p.oom_score.to_string().into(),
                format!("{:.1}%", p.share_pct(snap.ctx.totalpages)).into(),
                ratatui::widgets::Cell::from(p.verdict.as_str()).style(vs),
                where_of(p).to_string().into(),
            ])
        });
        let header = Row::new(super::COLUMNS);
        let widths = [
            Constraint::Length(5),
            Constraint::Length(7),
            Constraint::Length(9),
            Constraint::Length(16),
            Constraint::Length(8),
            Constraint::Length(8),
            Constraint::Length(5),
            Constraint::Length(5),
            Constraint::Length(6),
            Constraint::Length(11),
            Constraint::Fill(1),
        ];
        render_table(f, area, rows, header, &widths, self.selected - offset);
    }

    fn draw_groups(
        &mut self,
        f: &mut Frame,
        area: ratatui::layout::Rect,
        height: usize,
        by: GroupBy,
    ) {
        let Some(snap) = &self.snap else { return };
        let groups = rank::group(snap, by);
        self.selected = self.selected.min(groups.len().saturating_sub(1));
        let offset = (self.selected + 1).saturating_sub(height.max(1));
        let pk = snap.ctx.page_kb;
        let rows = groups.iter().skip(offset).take(height).map(|g| {
            Row::new(vec![
                g.members.len().to_string(),
                human_kb(g.terms.rss_pages * pk),
                human_kb(g.terms.swap_pages * pk),
                format!("{:.1}%", g.share_pct(snap.ctx.totalpages)),
                g.best_rank.to_string(),
                format!(
                    "{}{}",
                    crate::values::escape_text(&g.key),
                    if g.has_next_victim {
                        "  ← next victim"
                    } else {
                        ""
                    }
                ),
            ])
        });
        let header = Row::new(["PROCS", "RSS", "SWAP", "SHARE", "BEST", "GROUP"]);
        let widths = [
            Constraint::Length(6),
            Constraint::Length(9),
            Constraint::Length(9),
            Constraint::Length(6),
            Constraint::Length(6),
            Constraint::Fill(1),
        ];
        render_table(f, area, rows, header, &widths, self.selected - offset);
    }
}

/// A table with a bold header and the selected row reversed.
fn render_table<'a>(
    f: &mut Frame,
    area: ratatui::layout::Rect,
    rows: impl IntoIterator<Item = Row<'a>>,
    header: Row<'a>,
    widths: &[Constraint],
    selected: usize,
) {
    let table = Table::new(rows, widths.iter().copied())
        .header(header.style(Style::new().add_modifier(Modifier::BOLD | Modifier::UNDERLINED)))
        .row_highlight_style(Style::new().add_modifier(Modifier::REVERSED));
    let mut state = TableState::default().with_selected(Some(selected));
    f.render_stateful_widget(table, area, &mut state);
}
