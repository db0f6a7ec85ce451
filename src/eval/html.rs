//! HTML renderings of reports: one self-contained page (inline CSS and SVG, no scripts, fonts or
//! links to fetch), readable offline and safe to mail. Pure: a report in, a `String` out.
//!
//! Every piece of text that comes from data (paragraphs, labels, targets, names) goes through
//! [`escape`]; the page must show a paragraph containing `<script>` as text.

use std::fmt::Write as _;

use super::bootstrap::Interval;
use super::compare::{Comparison, PairComparison, TaskComparison};
use super::metrics::{Confusion, LabelScores};
use super::report::{EvalReport, StanceReport, ThemeReport};
use super::text::{bracket, interval_note, p_value, run_line, score, signed};

/// Approximate width of one character of the 12px sans-serif used in charts, for layout.
const CHAR_WIDTH: f64 = 6.6;

/// Picks a score and its interval out of a report, for a chart.
type ScorePicker = fn(&EvalReport) -> Option<(f64, Option<Interval>)>;

/// One page for one configuration.
pub fn render_html(report: &EvalReport) -> String {
    let mut body = String::new();
    let _ = writeln!(
        body,
        "<header><h1>stancer evaluation</h1><p class=\"lead\">{} &middot; {} paragraphs</p>\
         <p class=\"muted\">{}<br>{}</p></header>",
        escape(&report.name),
        report.n,
        escape(&run_line(&report.run)),
        escape(&interval_note(report))
    );
    report_sections(&mut body, report, "r", 2);
    page(&format!("stancer evaluation: {}", report.name), &body)
}

/// One page comparing configurations: the comparison table, the pairwise tests, then each
/// configuration's own sections.
pub fn render_comparison_html(comparison: &Comparison) -> String {
    let mut body = String::new();
    let bootstrap = &comparison.bootstrap;
    let _ = writeln!(
        body,
        "<header><h1>stancer comparison</h1><p class=\"lead\">{} configurations</p>\
         <p class=\"muted\">{:.0}% percentile bootstrap intervals, {} resamples over paragraphs, \
         seed {}; paired tests call a difference significant when p &lt; {}</p></header>",
        comparison.configurations.len(),
        bootstrap.confidence * 100.0,
        bootstrap.resamples,
        bootstrap.seed,
        comparison.significance_level
    );

    body.push_str("<section><h2>Scores</h2>\n<table>\n<thead><tr><th>configuration</th>");
    body.push_str("<th>theme accuracy</th><th>theme macro-F1</th><th>stance macro-F1</th>");
    body.push_str("<th>stance F<sub>avg</sub></th><th class=\"num\">paragraphs/s</th>");
    body.push_str("<th>device</th></tr></thead>\n<tbody>\n");
    for (i, report) in comparison.configurations.iter().enumerate() {
        let theme = report.theme.as_ref();
        let stance = report.stance.as_ref().map(|s| &s.scores);
        let _ = writeln!(
            body,
            "<tr><td class=\"name\"><a href=\"#c{i}\">{}</a></td>{}{}{}{}<td class=\"num\">{}</td><td>{}</td></tr>",
            escape(&report.name),
            score_cell(theme.map(|t| t.accuracy), theme.and_then(|t| t.accuracy_ci)),
            score_cell(theme.map(|t| t.macro_f1), theme.and_then(|t| t.macro_f1_ci)),
            score_cell(stance.map(|s| s.macro_f1), stance.and_then(|s| s.macro_f1_ci)),
            score_cell(stance.and_then(|s| s.f_avg), stance.and_then(|s| s.f_avg_ci)),
            report
                .run
                .paragraphs_per_second
                .map(|rate| format!("{rate:.1}"))
                .unwrap_or_else(|| "&ndash;".to_string()),
            escape(&report.run.device),
        );
    }
    body.push_str("</tbody>\n</table>\n");
    let charts: [(&str, ScorePicker); 2] = [
        ("theme macro-F1", |r| {
            r.theme.as_ref().map(|t| (t.macro_f1, t.macro_f1_ci))
        }),
        ("stance macro-F1", |r| {
            r.stance
                .as_ref()
                .map(|s| (s.scores.macro_f1, s.scores.macro_f1_ci))
        }),
    ];
    body.push_str("<div class=\"charts\">\n");
    for (title, pick) in charts {
        let points: Vec<(&str, f64, Option<Interval>)> = comparison
            .configurations
            .iter()
            .filter_map(|r| pick(r).map(|(value, ci)| (r.name.as_str(), value, ci)))
            .collect();
        if !points.is_empty() {
            let _ = writeln!(
                body,
                "<figure><figcaption>{title}</figcaption>{}</figure>",
                forest_plot(&points)
            );
        }
    }
    body.push_str("</div>\n</section>\n");

    if !comparison.pairs.is_empty() {
        body.push_str("<section><h2>Paired tests</h2>\n");
        for pair in &comparison.pairs {
            pair_table(&mut body, pair);
        }
        body.push_str("</section>\n");
    }
    for (i, report) in comparison.configurations.iter().enumerate() {
        let _ = writeln!(
            body,
            "<article id=\"c{i}\" class=\"configuration\"><h2>{}</h2>\
             <p class=\"muted\">{} &middot; {} paragraphs</p>",
            escape(&report.name),
            escape(&run_line(&report.run)),
            report.n
        );
        report_sections(&mut body, report, &format!("c{i}"), 3);
        body.push_str("</article>\n");
    }
    page("stancer comparison", &body)
}

/// The summary, theme and stance sections of one report, headings at `level`; `prefix` keeps
/// anchors unique when several reports share a page.
fn report_sections(out: &mut String, report: &EvalReport, prefix: &str, level: u8) {
    let h = level;
    let _ = writeln!(out, "<section id=\"{prefix}-summary\"><h{h}>Summary</h{h}>");
    let mut rows: Vec<(&str, Option<f64>, Option<Interval>)> = Vec::new();
    if let Some(theme) = &report.theme {
        rows.push(("theme accuracy", Some(theme.accuracy), theme.accuracy_ci));
        rows.push((
            "theme accuracy, alternatives accepted",
            Some(theme.accuracy_also),
            theme.accuracy_also_ci,
        ));
        rows.push(("theme macro-F1", Some(theme.macro_f1), theme.macro_f1_ci));
    }
    if let Some(stance) = &report.stance {
        let scores = &stance.scores;
        rows.push(("stance macro-F1", Some(scores.macro_f1), scores.macro_f1_ci));
        rows.push((
            "stance F_avg (favor, against)",
            scores.f_avg,
            scores.f_avg_ci,
        ));
        rows.push(("stance accuracy", Some(scores.accuracy), scores.accuracy_ci));
    }
    if rows.is_empty() {
        out.push_str("<p>The gold has no theme or stance labels: nothing was scored.</p>\n");
    } else {
        out.push_str(
            "<table class=\"summary\">\n<thead><tr><th>metric</th><th class=\"num\">score</th>\
             <th>interval</th><th class=\"scale\">0 &mdash; 1</th></tr></thead>\n<tbody>\n",
        );
        for (name, value, interval) in rows {
            let _ =
                writeln!(
                out,
                "<tr><td>{}</td><td class=\"num\">{}</td><td class=\"ci\">{}</td><td>{}</td></tr>",
                escape(name),
                value.map(score).unwrap_or_else(|| "&ndash;".to_string()),
                interval.map(bracket).unwrap_or_default(),
                value.map(|v| interval_strip(v, interval)).unwrap_or_default(),
            );
        }
        out.push_str("</tbody>\n</table>\n");
    }
    out.push_str("</section>\n");
    if let Some(theme) = &report.theme {
        theme_section(out, theme, prefix, h);
    }
    if let Some(stance) = &report.stance {
        stance_section(out, stance, prefix, h);
    }
}

fn theme_section(out: &mut String, theme: &ThemeReport, prefix: &str, h: u8) {
    let _ = writeln!(
        out,
        "<section id=\"{prefix}-theme\"><h{h}>Theme <span class=\"muted\">{} paragraphs</span></h{h}>",
        theme.n
    );
    out.push_str("<div class=\"charts\">\n");
    let _ = writeln!(
        out,
        "<figure><figcaption>F1 per label</figcaption>{}</figure>",
        f1_bars(&theme.labels)
    );
    let _ = writeln!(
        out,
        "<figure><figcaption>Confusion: rows gold, columns predicted</figcaption>{}</figure>",
        heatmap(&theme.confusion)
    );
    out.push_str("</div>\n");
    label_table(out, "label", &theme.labels);
    if theme.labels.iter().any(|l| l.f1.is_none()) {
        out.push_str(
            "<p class=\"note\">&ndash; : the label occurs neither in the gold nor in the \
             predictions, and is left out of macro-F1.</p>\n",
        );
    }
    let _ = writeln!(
        out,
        "<details open><summary>Misclassified paragraphs ({})</summary>",
        theme.misclassified.len()
    );
    if theme.misclassified.is_empty() {
        out.push_str("<p class=\"muted\">None.</p>\n");
    }
    for miss in &theme.misclassified {
        let accepted = if miss.accepted_by_also {
            " <span class=\"tag ok\">accepted alternative</span>"
        } else {
            ""
        };
        let also = if miss.also.is_empty() {
            String::new()
        } else {
            format!(
                " <span class=\"muted\">also accepted: {}</span>",
                escape(&miss.also.join(", "))
            )
        };
        let _ = writeln!(
            out,
            "<div class=\"miss\"><div class=\"meta\"><code>{}</code> gold \
             <span class=\"tag gold\">{}</span> predicted <span class=\"tag wrong\">{}</span>{accepted}{also}</div>\
             <p>{}</p></div>",
            escape(&miss.id),
            escape(&miss.gold),
            escape(&miss.predicted),
            escape(&miss.text)
        );
    }
    out.push_str("</details>\n</section>\n");
}

fn stance_section(out: &mut String, stance: &StanceReport, prefix: &str, h: u8) {
    let _ = writeln!(
        out,
        "<section id=\"{prefix}-stance\"><h{h}>Stance <span class=\"muted\">{} rows: {} paragraphs \
         &times; {} targets</span></h{h}>",
        stance.scores.n,
        stance.paragraphs,
        stance.targets.len()
    );
    out.push_str("<div class=\"charts\">\n");
    let _ = writeln!(
        out,
        "<figure><figcaption>F1 per class</figcaption>{}</figure>",
        f1_bars(&stance.scores.classes)
    );
    let _ = writeln!(
        out,
        "<figure><figcaption>Confusion: rows gold, columns predicted</figcaption>{}</figure>",
        heatmap(&stance.scores.confusion)
    );
    out.push_str("</div>\n");
    label_table(out, "class", &stance.scores.classes);

    out.push_str(
        "<table>\n<thead><tr><th>target</th><th class=\"num\">n</th><th class=\"num\">accuracy</th>\
         <th class=\"num\">macro-F1</th><th>interval</th><th class=\"num\">F<sub>avg</sub></th>\
         <th>interval</th></tr></thead>\n<tbody>\n",
    );
    for target in &stance.targets {
        let scores = &target.scores;
        let _ = writeln!(
            out,
            "<tr><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td>\
             <td class=\"ci\">{}</td><td class=\"num\">{}</td><td class=\"ci\">{}</td></tr>",
            escape(&target.target),
            scores.n,
            score(scores.accuracy),
            score(scores.macro_f1),
            scores.macro_f1_ci.map(bracket).unwrap_or_default(),
            scores
                .f_avg
                .map(score)
                .unwrap_or_else(|| "&ndash;".to_string()),
            scores.f_avg_ci.map(bracket).unwrap_or_default(),
        );
    }
    out.push_str("</tbody>\n</table>\n");

    let _ = writeln!(
        out,
        "<details open><summary>Misclassified (paragraph, target) rows ({})</summary>",
        stance.misclassified.len()
    );
    if stance.misclassified.is_empty() {
        out.push_str("<p class=\"muted\">None.</p>\n");
    }
    for miss in &stance.misclassified {
        let _ = writeln!(
            out,
            "<div class=\"miss\"><div class=\"meta\"><code>{}</code> target <b>{}</b> gold \
             <span class=\"tag gold\">{}</span> predicted <span class=\"tag wrong\">{}</span></div>\
             <p>{}</p></div>",
            escape(&miss.id),
            escape(&miss.target),
            miss.gold,
            miss.predicted,
            escape(&miss.text)
        );
    }
    out.push_str("</details>\n</section>\n");
}

fn label_table(out: &mut String, heading: &str, labels: &[LabelScores]) {
    let _ = writeln!(
        out,
        "<table>\n<thead><tr><th>{heading}</th><th class=\"num\">precision</th>\
         <th class=\"num\">recall</th><th class=\"num\">F1</th><th class=\"num\">support</th>\
         <th class=\"num\">predicted</th></tr></thead>\n<tbody>"
    );
    for label in labels {
        let optional =
            |value: Option<f64>| value.map(score).unwrap_or_else(|| "&ndash;".to_string());
        let _ = writeln!(
            out,
            "<tr><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td>\
             <td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
            escape(&label.label),
            optional(label.precision),
            optional(label.recall),
            optional(label.f1),
            label.support,
            label.predicted
        );
    }
    out.push_str("</tbody>\n</table>\n");
}

fn pair_table(out: &mut String, pair: &PairComparison) {
    let _ = writeln!(
        out,
        "<h3>{} <span class=\"muted\">vs</span> {}</h3>\n<p class=\"muted\">a = {}, b = {}; \
         differences are b &minus; a.</p>",
        escape(&pair.a),
        escape(&pair.b),
        escape(&pair.a),
        escape(&pair.b)
    );
    out.push_str(
        "<table>\n<thead><tr><th>task</th><th>test</th><th class=\"num\">a</th>\
         <th class=\"num\">b</th><th class=\"num\">b &minus; a</th><th>interval</th>\
         <th class=\"num\">p</th><th>verdict</th></tr></thead>\n<tbody>\n",
    );
    for (task, comparison) in [("theme", &pair.theme), ("stance", &pair.stance)] {
        if let Some(comparison) = comparison {
            pair_rows(out, task, comparison, pair);
        }
    }
    out.push_str("</tbody>\n</table>\n");
}

fn pair_rows(out: &mut String, task: &str, comparison: &TaskComparison, pair: &PairComparison) {
    let verdict = |significant: bool, b_better: bool| {
        if !significant {
            "<span class=\"tag\">not significant</span>".to_string()
        } else {
            let winner = if b_better { &pair.b } else { &pair.a };
            format!("<span class=\"tag ok\">{} better</span>", escape(winner))
        }
    };
    for test in &comparison.tests {
        let _ = writeln!(
            out,
            "<tr><td>{task}</td><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td>\
             <td class=\"num\">{}</td><td class=\"ci\">{}</td><td class=\"num\">{}</td><td>{}</td></tr>",
            escape(test.metric.name()),
            score(test.a),
            score(test.b),
            signed(test.difference),
            test.difference_ci
                .map(|ci| format!("[{}, {}]", signed(ci.low), signed(ci.high)))
                .unwrap_or_default(),
            test.p_value
                .map(|p| escape(&p_value(p)))
                .unwrap_or_else(|| "&ndash;".to_string()),
            verdict(test.significant, test.difference > 0.0),
        );
    }
    let mcnemar = &comparison.mcnemar;
    let _ = writeln!(
        out,
        "<tr><td>{task}</td><td>McNemar</td><td class=\"num\">{} only a</td>\
         <td class=\"num\">{} only b</td><td></td><td class=\"muted\">rows right under one only</td>\
         <td class=\"num\">{}</td><td>{}</td></tr>",
        mcnemar.only_a_correct,
        mcnemar.only_b_correct,
        escape(&p_value(mcnemar.p_value)),
        verdict(
            mcnemar.significant,
            mcnemar.only_b_correct > mcnemar.only_a_correct
        ),
    );
}

fn score_cell(value: Option<f64>, interval: Option<Interval>) -> String {
    match value {
        Some(value) => format!(
            "<td><b>{}</b> <span class=\"ci\">{}</span></td>",
            score(value),
            interval.map(bracket).unwrap_or_default()
        ),
        None => "<td>&ndash;</td>".to_string(),
    }
}

/// A 0..1 strip with the interval as a band and the score as a dot.
fn interval_strip(value: f64, interval: Option<Interval>) -> String {
    const WIDTH: f64 = 160.0;
    let x = |v: f64| 4.0 + v.clamp(0.0, 1.0) * (WIDTH - 8.0);
    let mut svg = format!(
        "<svg class=\"strip\" width=\"{WIDTH}\" height=\"14\" viewBox=\"0 0 {WIDTH} 14\" role=\"img\">\
         <line x1=\"{:.1}\" y1=\"7\" x2=\"{:.1}\" y2=\"7\" class=\"axis\"/>",
        x(0.0),
        x(1.0)
    );
    if let Some(interval) = interval {
        let _ = write!(
            svg,
            "<rect x=\"{:.1}\" y=\"3\" width=\"{:.1}\" height=\"8\" rx=\"3\" class=\"band\"/>",
            x(interval.low),
            (x(interval.high) - x(interval.low)).max(1.0)
        );
    }
    let _ = write!(
        svg,
        "<circle cx=\"{:.1}\" cy=\"7\" r=\"4\" class=\"dot\"/></svg>",
        x(value)
    );
    svg
}

/// Horizontal F1 bars, one per label, with the value at the end; absent labels say so.
fn f1_bars(labels: &[LabelScores]) -> String {
    const BAR: f64 = 200.0;
    const ROW: f64 = 24.0;
    let label_width = text_width(labels.iter().map(|l| l.label.as_str())) + 12.0;
    let width = label_width + BAR + 50.0;
    let height = ROW * labels.len() as f64 + 22.0;
    let mut svg = format!(
        "<svg width=\"{width:.0}\" height=\"{height:.0}\" viewBox=\"0 0 {width:.0} {height:.0}\" \
         role=\"img\" aria-label=\"F1 per label\">"
    );
    for (i, label) in labels.iter().enumerate() {
        let y = i as f64 * ROW;
        let _ = write!(
            svg,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\" class=\"label\">{}</text>\
             <rect x=\"{label_width:.1}\" y=\"{:.1}\" width=\"{BAR:.1}\" height=\"16\" class=\"track\"/>",
            label_width - 8.0,
            y + 13.0,
            escape(&label.label),
            y + 2.0
        );
        match label.f1 {
            Some(f1) => {
                let _ = write!(
                    svg,
                    "<rect x=\"{label_width:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"16\" class=\"bar\">\
                     <title>{}: F1 {}</title></rect>\
                     <text x=\"{:.1}\" y=\"{:.1}\" class=\"value\">{}</text>",
                    y + 2.0,
                    f1 * BAR,
                    escape(&label.label),
                    score(f1),
                    label_width + BAR + 6.0,
                    y + 14.0,
                    score(f1)
                );
            }
            None => {
                let _ = write!(
                    svg,
                    "<text x=\"{:.1}\" y=\"{:.1}\" class=\"absent\">absent from gold and predictions</text>",
                    label_width + 6.0,
                    y + 14.0
                );
            }
        }
    }
    // Axis ticks at 0, 0.5, 1.
    let axis_y = ROW * labels.len() as f64 + 14.0;
    for tick in [0.0, 0.5, 1.0] {
        let _ = write!(
            svg,
            "<text x=\"{:.1}\" y=\"{axis_y:.1}\" text-anchor=\"middle\" class=\"tick\">{tick}</text>",
            label_width + tick * BAR
        );
    }
    svg.push_str("</svg>");
    svg
}

/// The confusion matrix as a grid: cells shaded by their share of the gold row, blue on the
/// diagonal (right) and red off it (wrong), with the count written in.
fn heatmap(confusion: &Confusion) -> String {
    const CELL: f64 = 36.0;
    let names = || confusion.labels.iter().map(String::as_str);
    let left = text_width(names()) + 16.0;
    // Column labels are turned 45 degrees: they need height and spill to the right. Real glyphs
    // run a little narrower than CHAR_WIDTH, so the diagonal needs less than the full width.
    let spill = text_width(names()) * std::f64::consts::FRAC_1_SQRT_2 * 0.95;
    let top = spill + 28.0;
    let size = confusion.labels.len() as f64 * CELL;
    let width = left + size + spill + 10.0;
    let height = top + size + 10.0;
    let mut svg = format!(
        "<svg width=\"{width:.0}\" height=\"{height:.0}\" viewBox=\"0 0 {width:.0} {height:.0}\" \
         role=\"img\" aria-label=\"confusion matrix\">\
         <text x=\"{left:.1}\" y=\"12\" class=\"axis-title\">predicted &#8594;</text>\
         <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\" class=\"axis-title\">gold &#8595;</text>",
        left - 6.0,
        top - 8.0,
    );
    for (j, label) in confusion.labels.iter().enumerate() {
        let x = left + j as f64 * CELL + CELL / 2.0;
        let y = top - 6.0;
        let _ = write!(
            svg,
            "<text x=\"{x:.1}\" y=\"{y:.1}\" transform=\"rotate(-45 {x:.1} {y:.1})\" class=\"label\">{}</text>",
            escape(label)
        );
    }
    for (i, (label, row)) in confusion.labels.iter().zip(&confusion.matrix).enumerate() {
        let y = top + i as f64 * CELL;
        let _ = write!(
            svg,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\" class=\"label\">{}</text>",
            left - 6.0,
            y + CELL / 2.0 + 4.0,
            escape(label)
        );
        let total: usize = row.iter().sum();
        for (j, &count) in row.iter().enumerate() {
            let x = left + j as f64 * CELL;
            let share = if total > 0 {
                count as f64 / total as f64
            } else {
                0.0
            };
            let fill = cell_colour(share, i == j, count);
            let _ = write!(
                svg,
                "<rect x=\"{x:.1}\" y=\"{y:.1}\" width=\"{CELL:.1}\" height=\"{CELL:.1}\" fill=\"{fill}\" \
                 class=\"cell\"><title>gold {}, predicted {}: {count} ({:.0}% of the gold row)</title></rect>",
                escape(label),
                escape(&confusion.labels[j]),
                share * 100.0
            );
            if count > 0 {
                // A class, not a fill attribute: the stylesheet's text fill would win over it.
                let ink = if share > 0.5 { "count light" } else { "count" };
                let _ = write!(
                    svg,
                    "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" class=\"{ink}\">{count}</text>",
                    x + CELL / 2.0,
                    y + CELL / 2.0 + 4.0
                );
            }
        }
    }
    svg.push_str("</svg>");
    svg
}

/// Blue for hits, red for errors, deeper with the share of the gold row; pale grey for none.
fn cell_colour(share: f64, diagonal: bool, count: usize) -> String {
    if count == 0 {
        return "#f4f5f7".to_string();
    }
    let (light, dark) = if diagonal {
        ((235.0, 243.0, 252.0), (37.0, 99.0, 175.0))
    } else {
        ((253.0, 236.0, 232.0), (192.0, 48.0, 42.0))
    };
    // Start a little way in, so a single count is visibly coloured.
    let t = 0.15 + 0.85 * share.clamp(0.0, 1.0);
    let mix = |a: f64, b: f64| (a + (b - a) * t).round() as u8;
    format!(
        "#{:02x}{:02x}{:02x}",
        mix(light.0, dark.0),
        mix(light.1, dark.1),
        mix(light.2, dark.2)
    )
}

/// Each configuration's score as a dot with its interval as a whisker, on one 0..1 axis.
fn forest_plot(points: &[(&str, f64, Option<Interval>)]) -> String {
    const AXIS: f64 = 240.0;
    const ROW: f64 = 26.0;
    let left = text_width(points.iter().map(|p| p.0)) + 14.0;
    let width = left + AXIS + 60.0;
    let height = ROW * points.len() as f64 + 24.0;
    let x = |v: f64| left + v.clamp(0.0, 1.0) * AXIS;
    let mut svg = format!(
        "<svg width=\"{width:.0}\" height=\"{height:.0}\" viewBox=\"0 0 {width:.0} {height:.0}\" role=\"img\">"
    );
    for tick in [0.0, 0.25, 0.5, 0.75, 1.0] {
        let _ = write!(
            svg,
            "<line x1=\"{0:.1}\" y1=\"0\" x2=\"{0:.1}\" y2=\"{1:.1}\" class=\"grid\"/>\
             <text x=\"{0:.1}\" y=\"{2:.1}\" text-anchor=\"middle\" class=\"tick\">{tick}</text>",
            x(tick),
            ROW * points.len() as f64,
            ROW * points.len() as f64 + 16.0
        );
    }
    for (i, (name, value, interval)) in points.iter().enumerate() {
        let y = i as f64 * ROW + ROW / 2.0;
        let _ = write!(
            svg,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\" class=\"label\">{}</text>",
            left - 8.0,
            y + 4.0,
            escape(name)
        );
        if let Some(interval) = interval {
            let _ = write!(
                svg,
                "<line x1=\"{:.1}\" y1=\"{y:.1}\" x2=\"{:.1}\" y2=\"{y:.1}\" class=\"whisker\"/>",
                x(interval.low),
                x(interval.high)
            );
        }
        let _ = write!(
            svg,
            "<circle cx=\"{:.1}\" cy=\"{y:.1}\" r=\"5\" class=\"dot\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\" class=\"value\">{}</text>",
            x(*value),
            left + AXIS + 8.0,
            y + 4.0,
            score(*value)
        );
    }
    svg.push_str("</svg>");
    svg
}

fn text_width<'a>(texts: impl Iterator<Item = &'a str>) -> f64 {
    texts.map(|t| t.chars().count()).max().unwrap_or(0) as f64 * CHAR_WIDTH
}

/// Escapes text for HTML element content and attribute values alike.
pub fn escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#39;"),
            c => escaped.push(c),
        }
    }
    escaped
}

fn page(title: &str, body: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n<main>\n{body}</main>\n</body>\n</html>\n",
        escape(title)
    )
}

const STYLE: &str = r#"
:root { --ink: #1a202c; --muted: #5f6b7a; --line: #e2e6ea; --accent: #2563af; --bad: #c0302a; --good: #2f7d4f; }
* { box-sizing: border-box; }
body { margin: 0; background: #fafbfc; color: var(--ink); font: 14px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
main { max-width: 1080px; margin: 0 auto; padding: 28px 32px 64px; }
header { border-bottom: 1px solid var(--line); margin-bottom: 8px; }
h1 { font-size: 22px; margin: 0 0 4px; }
h2 { font-size: 18px; margin: 28px 0 10px; }
h3 { font-size: 15px; margin: 22px 0 8px; }
.lead { font-size: 16px; margin: 0 0 4px; }
.muted { color: var(--muted); font-weight: normal; }
.note { color: var(--muted); font-size: 12px; margin: 4px 0 12px; }
table { border-collapse: collapse; margin: 8px 0 16px; background: #fff; border: 1px solid var(--line); }
th, td { padding: 5px 12px; text-align: left; border-bottom: 1px solid var(--line); vertical-align: middle; }
th { font-size: 12px; color: var(--muted); background: #f3f5f7; font-weight: 600; }
tbody tr:nth-child(even) { background: #fbfcfd; }
.num { text-align: right; font-variant-numeric: tabular-nums; }
.ci { color: var(--muted); font-variant-numeric: tabular-nums; white-space: nowrap; }
.scale { font-weight: normal; }
td.name { white-space: nowrap; }
.charts { display: flex; flex-wrap: wrap; gap: 24px; align-items: flex-start; }
figure { margin: 8px 0; padding: 12px 14px; background: #fff; border: 1px solid var(--line); border-radius: 6px; overflow-x: auto; max-width: 100%; }
figcaption { font-size: 12px; color: var(--muted); margin-bottom: 6px; }
svg text { font: 12px system-ui, -apple-system, "Segoe UI", Roboto, Arial, sans-serif; fill: var(--ink); }
svg .tick, svg .absent { fill: var(--muted); font-size: 11px; }
svg .absent { font-style: italic; }
svg .axis-title { fill: var(--muted); font-size: 11px; }
svg .track { fill: #eef1f4; }
svg .bar { fill: var(--accent); }
svg .value { font-variant-numeric: tabular-nums; }
svg .cell { stroke: #fff; stroke-width: 1; }
svg .count { font-size: 12px; font-weight: 600; }
svg text.light { fill: #ffffff; }
svg .axis, svg .grid { stroke: #d5dae0; stroke-width: 1; }
svg .band { fill: #b9cde8; }
svg .whisker { stroke: var(--accent); stroke-width: 2; }
svg .dot { fill: var(--accent); }
details { margin: 12px 0 20px; }
summary { cursor: pointer; font-weight: 600; margin-bottom: 8px; }
.miss { background: #fff; border: 1px solid var(--line); border-left: 3px solid var(--bad); border-radius: 4px; padding: 8px 12px; margin: 8px 0; }
.miss p { margin: 4px 0 0; }
.meta { font-size: 12px; color: var(--muted); }
.meta b { color: var(--ink); font-weight: 600; }
code { font: 12px ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; color: var(--ink); }
.tag { display: inline-block; padding: 0 7px; border-radius: 9px; font-size: 12px; background: #edf0f3; color: var(--ink); }
.tag.gold { background: #e3f1e8; color: var(--good); }
.tag.wrong { background: #fbe7e5; color: var(--bad); }
.tag.ok { background: #e6eefa; color: var(--accent); }
article.configuration { border-top: 2px solid var(--line); margin-top: 36px; }
"#;

#[cfg(test)]
mod tests {
    use super::super::sample::{sample_comparison, sample_report, synthetic};
    use super::super::{compare, render_comparison_text, Bootstrap};
    use super::*;

    #[test]
    fn report_html() {
        insta::assert_snapshot!(render_html(&sample_report()));
    }

    #[test]
    fn comparison_html() {
        insta::assert_snapshot!(render_comparison_html(&sample_comparison()));
    }

    #[test]
    fn escapes_everything_that_comes_from_data() {
        assert_eq!(
            escape(r#"<script>alert("x" & 'y')</script>"#),
            "&lt;script&gt;alert(&quot;x&quot; &amp; &#39;y&#39;)&lt;/script&gt;"
        );
        let mut report = sample_report();
        let theme = report.theme.as_mut().unwrap();
        theme.misclassified[0].text = "<script>alert(1)</script>".to_string();
        theme.labels[0].label = "<b>label</b>".to_string();
        report.name = "<i>name</i>".to_string();
        let html = render_html(&report);
        assert!(!html.contains("<script>"));
        assert!(!html.contains("<b>label</b>"));
        assert!(!html.contains("<i>name</i>"));
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    }

    #[test]
    fn pages_are_self_contained() {
        for html in [
            render_html(&sample_report()),
            render_comparison_html(&sample_comparison()),
        ] {
            for external in ["http://", "https://", "<script", "<link", "@import", "url("] {
                assert!(!html.contains(external), "the page contains {external}");
            }
        }
    }

    #[test]
    fn a_significant_difference_names_the_better_configuration() {
        let comparison = compare(
            &[synthetic("weak", 200, 120), synthetic("strong", 200, 180)],
            &["x", "y"],
            &Bootstrap::default(),
        )
        .unwrap();
        let html = render_comparison_html(&comparison);
        assert!(html.contains("<span class=\"tag ok\">strong better</span>"));
        assert!(!html.contains("not significant"));
        let text = render_comparison_text(&comparison);
        assert!(text.contains("strong better") && !text.contains("not significant"));
    }

    #[test]
    fn heatmap_cells_shade_by_share_of_the_gold_row() {
        assert_eq!(cell_colour(0.0, true, 0), "#f4f5f7");
        assert_ne!(cell_colour(1.0, true, 3), cell_colour(1.0, false, 3));
        assert_ne!(cell_colour(0.2, true, 1), cell_colour(0.9, true, 5));
    }
}
