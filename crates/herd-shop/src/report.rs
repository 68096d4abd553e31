//! A comparison of several models on one test file: a markdown table and a
//! bar chart per metric (`herd eval --compare`).
//!
//! The charts are drawn without any text, so that no font library is needed
//! (plotters' bitmap backend only); the bars stand left to right in the order
//! of the table's rows, each model in its own colour, and the markdown names
//! the colours.

use std::path::{Path, PathBuf};

use plotters::prelude::*;

use crate::error::ShopError;
use crate::eval::EvalReport;

/// One model's result in a comparison.
#[derive(Debug, Clone)]
pub struct ModelScore {
    /// How the model was named on the command line.
    pub name: String,
    /// Its parameter count.
    pub parameters: u64,
    /// Its scores.
    pub report: EvalReport,
}

/// Bar colours, one per model, with the names the markdown uses for them.
const PALETTE: [(RGBColor, &str); 8] = [
    (RGBColor(31, 119, 180), "blue"),
    (RGBColor(255, 127, 14), "orange"),
    (RGBColor(44, 160, 44), "green"),
    (RGBColor(214, 39, 40), "red"),
    (RGBColor(148, 103, 189), "purple"),
    (RGBColor(140, 86, 75), "brown"),
    (RGBColor(227, 119, 194), "pink"),
    (RGBColor(127, 127, 127), "grey"),
];

/// A charted metric: file stem, title, and how to read it off a report.
struct Metric {
    file: &'static str,
    title: &'static str,
    value: fn(&ModelScore) -> f64,
}

const METRICS: [Metric; 5] = [
    Metric {
        file: "exact_match",
        title: "Exact match (%)",
        value: |s| 100.0 * s.report.exact_match(),
    },
    Metric {
        file: "tool_call_validity",
        title: "Tool calls well-formed (%)",
        value: |s| 100.0 * s.report.tool_call_validity(),
    },
    Metric {
        file: "perplexity",
        title: "Perplexity of the gold replies (lower is better)",
        value: |s| s.report.perplexity(),
    },
    Metric {
        file: "tokens_per_second",
        title: "Decoding speed (tokens/s)",
        value: |s| s.report.tokens_per_second(),
    },
    Metric {
        file: "parameters",
        title: "Parameters (millions)",
        value: |s| s.parameters as f64 / 1e6,
    },
];

/// Writes `report.md` and one PNG bar chart per metric into `dir`
/// (created if missing); returns the markdown file's path. `data` is the
/// test file the scores came from, named in the report.
pub fn write_comparison(
    dir: &Path,
    data: &Path,
    scores: &[ModelScore],
) -> Result<PathBuf, ShopError> {
    if scores.is_empty() || scores.len() > PALETTE.len() {
        return Err(ShopError::Eval(format!(
            "a comparison needs 1 to {} models, got {}",
            PALETTE.len(),
            scores.len()
        )));
    }
    let write_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| ShopError::Io { path, source }
    };
    std::fs::create_dir_all(dir).map_err(write_err(dir))?;
    for metric in &METRICS {
        let values: Vec<f64> = scores.iter().map(metric.value).collect();
        bar_chart(&dir.join(format!("{}.png", metric.file)), &values)?;
    }
    let path = dir.join("report.md");
    std::fs::write(&path, markdown(data, scores)).map_err(write_err(&path))?;
    Ok(path)
}

/// The report's text: the table, then the charts.
fn markdown(data: &Path, scores: &[ModelScore]) -> String {
    let first = &scores[0].report;
    let mut md = format!(
        "# Model comparison\n\nTest file `{}`: {} cases scored for exact match ({} tool calls, \
         {} answers) and {} open cases (perplexity only); replies decoded greedily.\n\n",
        data.display(),
        first.cases,
        first.tool_cases,
        first.answer_cases,
        first.open_cases
    );
    md.push_str(
        "| colour | model | parameters | exact match | tool calls well-formed | tool calls exact \
         | answers | perplexity | tokens/s |\n|---|---|---|---|---|---|---|---|---|\n",
    );
    for (s, (_, colour)) in scores.iter().zip(PALETTE) {
        let r = &s.report;
        md.push_str(&format!(
            "| {colour} | `{}` | {:.2}M | {:.1}% ({}/{}) | {:.1}% ({}/{}) | {}/{} | {}/{} | {:.3} | {:.1} |\n",
            s.name,
            s.parameters as f64 / 1e6,
            100.0 * r.exact_match(),
            r.passed,
            r.cases,
            100.0 * r.tool_call_validity(),
            r.tool_cases_well_formed,
            r.tool_cases,
            r.tool_cases_passed,
            r.tool_cases,
            r.answer_cases_passed,
            r.answer_cases,
            r.perplexity(),
            r.tokens_per_second(),
        ));
    }
    md.push_str(
        "\nBars stand left to right in the order of the table, in the colours named there.\n\n",
    );
    for metric in &METRICS {
        md.push_str(&format!(
            "**{}**\n\n![{}]({}.png)\n\n",
            metric.title, metric.title, metric.file
        ));
    }
    md
}

/// One bar per value on a white canvas with light horizontal grid lines at
/// tenths of the tallest bar.
fn bar_chart(path: &Path, values: &[f64]) -> Result<(), ShopError> {
    let err = |e: String| ShopError::Eval(format!("drawing {}: {e}", path.display()));
    let top = values.iter().copied().fold(0.0, f64::max).max(1e-9) * 1.05;
    let n = values.len();
    let root = BitMapBackend::new(path, (120 + 100 * n as u32, 360)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(e.to_string()))?;
    let mut chart = ChartBuilder::on(&root)
        .margin(20)
        .build_cartesian_2d(0.0..n as f64, 0.0..top)
        .map_err(|e| err(e.to_string()))?;
    let grid = RGBColor(225, 225, 225);
    chart
        .draw_series((0..=10).map(|i| {
            let y = top / 1.05 * i as f64 / 10.0;
            PathElement::new(vec![(0.0, y), (n as f64, y)], grid)
        }))
        .map_err(|e| err(e.to_string()))?;
    chart
        .draw_series(
            values
                .iter()
                .zip(PALETTE)
                .enumerate()
                .map(|(i, (&v, (colour, _)))| {
                    let x = i as f64;
                    Rectangle::new([(x + 0.15, 0.0), (x + 0.85, v.max(0.0))], colour.filled())
                }),
        )
        .map_err(|e| err(e.to_string()))?;
    root.present().map_err(|e| err(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn score(name: &str, passed: usize) -> ModelScore {
        ModelScore {
            name: name.into(),
            parameters: 2_200_000,
            report: EvalReport {
                cases: 10,
                passed,
                tool_cases: 4,
                tool_cases_well_formed: 3,
                tool_cases_passed: 1,
                answer_cases: 6,
                answer_cases_passed: passed - 1,
                nll: 20.0,
                tokens: 10,
                decode_tokens: 100,
                decode_seconds: 2.0,
                ..EvalReport::default()
            },
        }
    }

    #[test]
    fn writes_the_table_and_one_chart_per_metric() {
        let dir = tempfile::tempdir().unwrap();
        let scores = [score("embedded", 3), score("student", 5)];
        let md_path = write_comparison(dir.path(), Path::new("test.jsonl"), &scores).unwrap();
        let md = std::fs::read_to_string(md_path).unwrap();
        assert!(md.contains("| blue | `embedded` | 2.20M | 30.0% (3/10) | 75.0% (3/4) | 1/4 | 2/6 | 7.389 | 50.0 |"), "{md}");
        assert!(md.contains("| orange | `student` |"));
        for metric in &METRICS {
            let png = std::fs::read(dir.path().join(format!("{}.png", metric.file))).unwrap();
            assert_eq!(&png[1..4], b"PNG");
            assert!(md.contains(&format!("({}.png)", metric.file)));
        }
        assert!(write_comparison(dir.path(), Path::new("t"), &[]).is_err());
    }
}
