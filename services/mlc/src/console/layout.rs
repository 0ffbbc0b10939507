//! The frame every page shares, the style sheet and the little script; small helpers for
//! what pages show the same way (times, forms).

use axum::http::header;
use axum::response::IntoResponse;
use maud::{html, Markup, DOCTYPE};

/// The sections of the navigation bar.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Nav {
    Overview,
    Deliveries,
    DeadLetters,
    Review,
    None,
}

/// A page of the console: navigation, title, body.
pub fn page(title: &str, nav: Nav, body: Markup) -> Markup {
    let item = |n: Nav, href: &str, text: &str| {
        html! { a href=(href) class=[(n == nav).then_some("active")] { (text) } }
    };
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · ml-connector" }
                link rel="stylesheet" href="/console.css";
                script src="/console.js" defer {}
            }
            body {
                header {
                    a.brand href="/" { "ml-connector" }
                    nav {
                        (item(Nav::Overview, "/", "Overview"))
                        (item(Nav::Deliveries, "/deliveries", "Deliveries"))
                        (item(Nav::DeadLetters, "/dead-letters", "Dead letters"))
                        (item(Nav::Review, "/review", "First-connect review"))
                    }
                }
                main {
                    h1 { (title) }
                    (body)
                }
            }
        }
    }
}

/// A page without navigation (login, errors).
pub fn bare(title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                title { (title) " · ml-connector" }
                link rel="stylesheet" href="/console.css";
            }
            body { header { a.brand href="/" { "ml-connector" } } main { h1 { (title) } (body) } }
        }
    }
}

/// A moment, in UTC in the HTML and in the reader's local time once the script ran.
pub fn time(ms: i64) -> Markup {
    let t = chrono::DateTime::from_timestamp_millis(ms).unwrap_or_default();
    html! { time datetime=(t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)) { (t.format("%Y-%m-%d %H:%M:%S UTC")) } }
}

/// How long ago, in words an operator reads at a glance.
pub fn age(ms: i64) -> String {
    let s = (mlc_store::now_ms() - ms).max(0) / 1000;
    match s {
        0..=59 => format!("{s} s ago"),
        60..=3599 => format!("{} min ago", s / 60),
        3600..=172_799 => format!("{} h ago", s / 3600),
        _ => format!("{} days ago", s / 86_400),
    }
}

pub async fn css() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8"), (header::CACHE_CONTROL, "max-age=300")], CSS)
}

pub async fn js() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/javascript; charset=utf-8"), (header::CACHE_CONTROL, "max-age=300")], JS)
}

const CSS: &str = r#"
:root { --fg:#1d2329; --muted:#5f6b76; --line:#d9dee3; --bg:#f6f7f9; --ok:#1a7f37; --warn:#9a6700; --bad:#cf222e; --link:#0b5cad; }
* { box-sizing: border-box; }
body { margin:0; font:14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color:var(--fg); background:var(--bg); }
header { display:flex; gap:2rem; align-items:center; padding:.6rem 1.5rem; background:#fff; border-bottom:1px solid var(--line); }
header .brand { font-weight:600; color:var(--fg); text-decoration:none; }
nav a { margin-right:1.2rem; color:var(--muted); text-decoration:none; padding:.2rem 0; }
nav a.active { color:var(--fg); border-bottom:2px solid var(--link); }
main { padding:1rem 1.5rem 3rem; max-width:1400px; }
h1 { font-size:1.35rem; margin:.4rem 0 1rem; }
h2 { font-size:1.05rem; margin:1.6rem 0 .6rem; }
a { color:var(--link); }
table { border-collapse:collapse; background:#fff; border:1px solid var(--line); width:100%; }
th, td { text-align:left; padding:.35rem .6rem; border-bottom:1px solid var(--line); vertical-align:top; }
th { font-weight:600; color:var(--muted); background:#fbfbfc; }
td.num, th.num { text-align:right; font-variant-numeric:tabular-nums; }
code, .mono { font-family:ui-monospace, SFMono-Regular, Menlo, monospace; font-size:12.5px; }
form.inline { display:inline; }
form.filters { display:flex; gap:.8rem; align-items:end; flex-wrap:wrap; margin-bottom:1rem; }
label { color:var(--muted); }
input, select, button { font:inherit; padding:.25rem .5rem; border:1px solid var(--line); border-radius:4px; background:#fff; }
button { cursor:pointer; background:#f3f4f6; }
button.primary { background:var(--link); color:#fff; border-color:var(--link); }
button.danger { color:var(--bad); }
a.button { display:inline-block; padding:.3rem .7rem; border-radius:4px; text-decoration:none; }
a.button.primary { background:var(--link); color:#fff; }
pre { background:#fff; border:1px solid var(--line); padding:.6rem .8rem; overflow-x:auto; white-space:pre-wrap; word-break:break-all; }
textarea.mapping { width:100%; min-height:24rem; font-family:ui-monospace, SFMono-Regular, Menlo, monospace; font-size:12.5px; border:1px solid var(--line); border-radius:4px; padding:.5rem; }
.ok { color:var(--ok); } .warn { color:var(--warn); } .bad { color:var(--bad); } .muted { color:var(--muted); }
.badge { display:inline-block; padding:0 .45rem; border-radius:9px; font-size:12px; border:1px solid currentColor; }
.error { color:var(--bad); }
.notice { background:#fff; border:1px solid var(--line); border-left:4px solid var(--link); padding:.6rem .9rem; margin:0 0 1rem; }
.notice.bad { border-left-color:var(--bad); color:var(--fg); }
dl.facts { display:grid; grid-template-columns:max-content 1fr; gap:.25rem 1.2rem; background:#fff; border:1px solid var(--line); padding:.8rem 1rem; }
dl.facts dt { color:var(--muted); } dl.facts dd { margin:0; }
ol.timeline { list-style:none; padding:0; margin:0; background:#fff; border:1px solid var(--line); }
ol.timeline li { padding:.4rem .8rem; border-bottom:1px solid var(--line); display:grid; grid-template-columns:12rem 11rem 1fr; gap:.8rem; }
ol.timeline li.new { animation: flash 2s ease-out; }
@keyframes flash { from { background:#fff6c7; } to { background:#fff; } }
.diff del { color:var(--bad); text-decoration:line-through; } .diff ins { color:var(--ok); text-decoration:none; }
.live { font-size:12px; color:var(--muted); }
svg.chart { background:#fff; border:1px solid var(--line); display:block; }
div.charts { display:flex; flex-wrap:wrap; gap:1.2rem; margin:1.2rem 0; }
figure.chart { margin:0; } figcaption { color:var(--muted); margin-bottom:.3rem; } svg.key { vertical-align:-1px; }
ul.why { margin:.3rem 0 0; padding-left:1.1rem; color:var(--fg); }
#services .badge { margin-right:.3rem; }
"#;

/// Times in the reader's local time; live regions fed by server-sent events; "select all".
const JS: &str = r#"
// One formatter for every time on the page: toLocaleString() builds a new one per call,
// which a page of 300 rows pays for in hundreds of milliseconds.
const localTime = new Intl.DateTimeFormat(undefined,
  { year: 'numeric', month: 'numeric', day: 'numeric', hour: 'numeric', minute: 'numeric', second: 'numeric' });
function localTimes(root) {
  for (const t of root.querySelectorAll('time[datetime]')) {
    const d = new Date(t.getAttribute('datetime'));
    if (!isNaN(d)) { t.title = t.textContent; t.textContent = localTime.format(d); }
  }
}
document.addEventListener('DOMContentLoaded', () => {
  localTimes(document);
  for (const el of document.querySelectorAll('[data-live]')) {
    const status = document.getElementById(el.dataset.liveStatus || '');
    const src = new EventSource(el.dataset.live);
    src.addEventListener('replace', e => { el.innerHTML = e.data; localTimes(el); });
    src.onopen = () => { if (status) status.textContent = 'live'; };
    src.onerror = () => { if (status) status.textContent = 'reconnecting…'; };
  }
  for (const all of document.querySelectorAll('input[data-select-all]')) {
    all.addEventListener('change', () => {
      for (const box of document.querySelectorAll('input[name="' + all.dataset.selectAll + '"]')) box.checked = all.checked;
    });
  }
});
"#;
