//! Small inline SVG charts for the review pages, drawn on the server (no script, no inline
//! style: presentation attributes and CSS classes only, so the page's CSP holds). Every text
//! that reaches the SVG is escaped here.

/// One point of a chart: a label (x) and a value (y).
#[derive(Debug, Clone)]
pub struct Point {
    /// Shown under the bar and in its tooltip.
    pub label: String,
    /// The bar's value (negative values are drawn as their magnitude, classed `neg`).
    pub value: f64,
    /// A CSS class for the bar (`in`, `out`, `warn`, ...).
    pub class: &'static str,
}

/// Escapes text for SVG/HTML content and attributes.
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

/// A compact number: 9500 -> `9.5k`, 12.34 -> `12.3`.
fn short(v: f64) -> String {
    let a = v.abs();
    if a >= 1e6 {
        format!("{:.1}M", v / 1e6)
    } else if a >= 1e3 {
        format!("{:.1}k", v / 1e3)
    } else {
        format!("{v:.1}")
    }
}

/// A bar chart of `points` with an optional horizontal reference line at `limit` (drawn
/// dashed, labelled). `title` is the accessible name.
pub fn bars(title: &str, points: &[Point], limit: Option<(f64, &str)>) -> String {
    const W: f64 = 560.0;
    const H: f64 = 160.0;
    const PAD_L: f64 = 8.0;
    const PAD_B: f64 = 28.0;
    const PAD_T: f64 = 12.0;
    let max = points
        .iter()
        .map(|p| p.value.abs())
        .chain(limit.map(|l| l.0))
        .fold(0.0_f64, f64::max)
        .max(f64::MIN_POSITIVE);
    let plot_h = H - PAD_B - PAD_T;
    let n = points.len().max(1) as f64;
    let slot = (W - PAD_L * 2.0) / n;
    let bar_w = (slot * 0.7).clamp(2.0, 48.0);
    let mut svg = format!(
        "<svg class=\"chart\" viewBox=\"0 0 {W} {H}\" width=\"{W}\" height=\"{H}\" role=\"img\" \
         aria-label=\"{t}\"><title>{t}</title>",
        t = esc(title)
    );
    svg.push_str(&format!(
        "<line class=\"axis\" x1=\"{PAD_L}\" y1=\"{y}\" x2=\"{x2}\" y2=\"{y}\"/>",
        y = H - PAD_B,
        x2 = W - PAD_L
    ));
    let show_every = (points.len() / 8).max(1);
    for (i, p) in points.iter().enumerate() {
        let h = (p.value.abs() / max) * plot_h;
        let x = PAD_L + slot * i as f64 + (slot - bar_w) / 2.0;
        let y = H - PAD_B - h;
        svg.push_str(&format!(
            "<rect class=\"bar {c}\" x=\"{x:.1}\" y=\"{y:.1}\" width=\"{bar_w:.1}\" \
             height=\"{h:.1}\"><title>{l}: {v:.2}</title></rect>",
            c = p.class,
            l = esc(&p.label),
            v = p.value
        ));
        svg.push_str(&format!(
            "<text class=\"tick\" x=\"{tx:.1}\" y=\"{ty:.1}\" text-anchor=\"middle\">{v}</text>",
            tx = x + bar_w / 2.0,
            ty = (y - 3.0).max(9.0),
            v = short(p.value)
        ));
        if i % show_every == 0 {
            let label: String = p.label.chars().take(10).collect();
            svg.push_str(&format!(
                "<text class=\"tick\" x=\"{tx:.1}\" y=\"{ty}\" text-anchor=\"middle\">{l}</text>",
                tx = x + bar_w / 2.0,
                ty = H - 10.0,
                l = esc(&label)
            ));
        }
    }
    if let Some((v, name)) = limit {
        let y = H - PAD_B - (v / max) * plot_h;
        svg.push_str(&format!(
            "<line class=\"limit\" x1=\"{PAD_L}\" y1=\"{y:.1}\" x2=\"{x2}\" y2=\"{y:.1}\"/>\
             <text class=\"tick\" x=\"{x2}\" y=\"{ty:.1}\" text-anchor=\"end\">{n}</text>",
            x2 = W - PAD_L,
            ty = (y - 3.0).max(10.0),
            n = esc(name)
        ));
    }
    svg.push_str("</svg>");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chart_text_is_escaped() {
        let svg = bars(
            "<script>alert(1)</script>",
            &[Point {
                label: "\"><script>x</script>".into(),
                value: 3.0,
                class: "in",
            }],
            Some((1.0, "<b>")),
        );
        assert!(!svg.contains("<script>"), "{svg}");
        assert!(!svg.contains("<b>"), "{svg}");
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
    }
}
