//! HTML pieces: escaping, the page frame, SVG line charts.

use std::fmt::Write;

/// Text for HTML element content and quoted attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Page {
    Tasks,
    Task,
    Workers,
}

/// The frame every page shares: navigation, the stylesheet and the script.
pub fn layout(page: Page, title: &str, body: &str) -> String {
    let on = |p: Page| if p == page || (p == Page::Tasks && page == Page::Task) { " class=\"on\"" } else { "" };
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title} · dts</title><link rel=\"stylesheet\" href=\"/ui/assets/dashboard.css\">\
         <script src=\"/ui/assets/dashboard.js\" defer></script></head>\
         <body><header><a class=\"brand\" href=\"/\">dts</a><nav><a href=\"/\"{tasks}>Tasks</a>\
         <a href=\"/ui/workers\"{workers}>Workers</a><a href=\"/metrics\">Metrics</a>\
         <a href=\"/openapi.json\">API</a></nav><label class=\"refresh\"><input type=\"checkbox\" id=\"auto-refresh\" checked> \
         auto-refresh</label></header><main id=\"content\">{body}</main></body></html>",
        title = esc(title),
        tasks = on(Page::Tasks),
        workers = on(Page::Workers),
    )
}

/// A line chart of `points` (Unix ms, value) as inline SVG, with its
/// latest and highest values labelled.
pub fn chart(id: &str, title: &str, points: &[(i64, f64)]) -> String {
    const W: f64 = 560.0;
    const H: f64 = 160.0;
    const PAD: f64 = 28.0;
    let mut svg = format!(
        "<figure class=\"chart\"><figcaption>{}</figcaption>\
         <svg id=\"{}\" viewBox=\"0 0 {W} {H}\" role=\"img\" aria-label=\"{}\">",
        esc(title),
        esc(id),
        esc(title)
    );
    if points.len() < 2 {
        svg.push_str(&format!(
            "<text x=\"{}\" y=\"{}\" class=\"empty\" text-anchor=\"middle\">collecting samples (one every 5 s)…</text>",
            W / 2.0,
            H / 2.0
        ));
        svg.push_str("</svg></figure>");
        return svg;
    }
    let (t0, t1) = (points[0].0, points[points.len() - 1].0);
    let top = points.iter().map(|p| p.1).fold(0.0_f64, f64::max).max(1e-9) * 1.1;
    let x = |t: i64| PAD + (t - t0) as f64 / (t1 - t0).max(1) as f64 * (W - 2.0 * PAD);
    let y = |v: f64| H - PAD - v / top * (H - 2.0 * PAD);
    let mut path = String::new();
    for (i, (t, v)) in points.iter().enumerate() {
        let _ = write!(path, "{}{:.1},{:.1}", if i == 0 { "" } else { " " }, x(*t), y(*v));
    }
    let last = points[points.len() - 1].1;
    let _ = write!(
        svg,
        "<line class=\"axis\" x1=\"{PAD}\" y1=\"{b}\" x2=\"{r}\" y2=\"{b}\"/>\
         <line class=\"axis\" x1=\"{PAD}\" y1=\"{PAD}\" x2=\"{PAD}\" y2=\"{b}\"/>\
         <text x=\"2\" y=\"{PAD}\" class=\"tick\">{max}</text><text x=\"2\" y=\"{b}\" class=\"tick\">0</text>\
         <polyline class=\"series\" points=\"{path}\"/>\
         <text x=\"{r}\" y=\"14\" class=\"latest\" text-anchor=\"end\">now: {last}</text>\
         <text x=\"{PAD}\" y=\"{H}\" class=\"tick\">{span} ago</text></svg></figure>",
        b = H - PAD,
        r = W - PAD,
        max = short(top / 1.1),
        last = short(last),
        span = ago(t1 - t0),
    );
    svg
}

fn short(v: f64) -> String {
    if v >= 1e6 {
        format!("{:.1}M", v / 1e6)
    } else if v >= 1e3 {
        format!("{:.1}k", v / 1e3)
    } else if v >= 10.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

fn ago(ms: i64) -> String {
    let s = ms / 1000;
    if s >= 120 {
        format!("{} min", s / 60)
    } else {
        format!("{s} s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn charts_draw_a_line_through_every_point() {
        let svg = chart("c", "Lag <s>", &[(0, 1.0), (5000, 2.0), (10_000, 0.5)]);
        assert!(svg.contains("<polyline class=\"series\" points=\""), "{svg}");
        let pts = svg.split("points=\"").nth(1).and_then(|s| s.split('"').next()).unwrap_or_default();
        assert_eq!(pts.split(' ').count(), 3, "{svg}");
        assert!(svg.contains("Lag &lt;s&gt;"));
        assert!(chart("c", "t", &[(0, 1.0)]).contains("collecting samples"));
    }

    proptest! {
        #[test]
        fn escaped_text_never_opens_markup(s in ".*") {
            let e = esc(&s);
            prop_assert!(!e.contains('<') && !e.contains('>') && !e.contains('"'));
        }

        #[test]
        fn charts_stay_inside_their_box(values in proptest::collection::vec(0.0f64..1e9, 2..50)) {
            let points: Vec<(i64, f64)> = values.iter().enumerate().map(|(i, v)| (i as i64 * 5000, *v)).collect();
            let svg = chart("c", "t", &points);
            let pts = svg.split("points=\"").nth(1).and_then(|s| s.split('"').next()).unwrap_or_default();
            for p in pts.split(' ') {
                let (x, y) = p.split_once(',').unwrap_or(("-1", "-1"));
                let (x, y): (f64, f64) = (x.parse().unwrap_or(-1.0), y.parse().unwrap_or(-1.0));
                prop_assert!((0.0..=560.0).contains(&x) && (0.0..=160.0).contains(&y), "{p}");
            }
        }
    }
}
