//! Results as machines and the README read them: one JSON object a line
//! while the run goes, and one Markdown table at the end. Each line names
//! its limit (measured in the same run) and its targets, and says whether
//! they were met.

use std::fmt;
use std::io::Write as _;

use serde_json::json;

use crate::measure::Sample;

/// What a workload should reach.
#[derive(Clone, Copy, Debug)]
pub enum Target {
    /// At least this fraction of the limit's rate.
    RatioAtLeast(f64),
    /// p50 below this many milliseconds.
    P50Under(f64),
    /// p99 below this many milliseconds.
    P99Under(f64),
    /// The line's figure below this, in its own unit.
    Under(f64),
    /// The line's figure exactly this (a count that must be 0, say).
    Exactly(f64),
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::RatioAtLeast(r) => write!(f, "≥ {r} of limit"),
            Target::P50Under(ms) => write!(f, "p50 < {ms} ms"),
            Target::P99Under(ms) => write!(f, "p99 < {ms} ms"),
            Target::Under(v) => write!(f, "< {v}"),
            Target::Exactly(v) => write!(f, "= {v}"),
        }
    }
}

/// One row of the results.
#[derive(Clone, Debug, Default)]
pub struct Line {
    pub workload: String,
    /// Concurrency, sizes, backend details: what makes the figure comparable.
    pub detail: String,
    /// The headline figure and its unit ("ops/s", "MiB", "s", ...).
    pub figure: f64,
    pub unit: &'static str,
    /// Latency quantiles in ms: p50, p99, p99.9, when the workload has them.
    pub latency: Option<[f64; 3]>,
    pub calls: u64,
    pub errors: u64,
    pub first_error: Option<String>,
    /// The limit's name and its figure in the same unit.
    pub limit: Option<(String, f64)>,
    pub targets: Vec<Target>,
}

impl Line {
    /// A rate line from a measured sample.
    pub fn rate(workload: &str, detail: String, sample: &Sample) -> Self {
        Self {
            workload: workload.into(),
            detail,
            figure: sample.per_second(),
            unit: "ops/s",
            latency: (sample.calls > 0)
                .then(|| [sample.ms(0.5), sample.ms(0.99), sample.ms(0.999)]),
            calls: sample.calls,
            errors: sample.errors,
            first_error: sample.first_error.clone(),
            ..Self::default()
        }
    }

    /// A single figure, such as a size or a duration.
    pub fn value(workload: &str, detail: String, figure: f64, unit: &'static str) -> Self {
        Self {
            workload: workload.into(),
            detail,
            figure,
            unit,
            ..Self::default()
        }
    }

    pub fn against(mut self, limit: Option<&Line>) -> Self {
        self.limit = limit.map(|l| (l.workload.clone(), l.figure));
        self
    }

    pub fn target(mut self, target: Target) -> Self {
        self.targets.push(target);
        self
    }

    pub fn ratio(&self) -> Option<f64> {
        let (_, limit) = self.limit.as_ref()?;
        (*limit > 0.0).then(|| self.figure / limit)
    }

    /// Whether every target holds; `None` when the line has none.
    pub fn met(&self) -> Option<bool> {
        if self.targets.is_empty() {
            return None;
        }
        let [p50, p99, _] = self.latency.unwrap_or([f64::INFINITY; 3]);
        Some(
            self.errors == 0
                && self.targets.iter().all(|t| match *t {
                    Target::RatioAtLeast(r) => self.ratio().is_some_and(|x| x >= r),
                    Target::P50Under(ms) => p50 < ms,
                    Target::P99Under(ms) => p99 < ms,
                    Target::Under(v) => self.figure < v,
                    Target::Exactly(v) => (self.figure - v).abs() < f64::EPSILON,
                }),
        )
    }

    pub fn json(&self) -> serde_json::Value {
        json!({
            "workload": self.workload,
            "detail": self.detail,
            "figure": self.figure,
            "unit": self.unit,
            "p50_ms": self.latency.map(|l| l[0]),
            "p99_ms": self.latency.map(|l| l[1]),
            "p999_ms": self.latency.map(|l| l[2]),
            "calls": self.calls,
            "errors": self.errors,
            "first_error": self.first_error,
            "limit": self.limit.as_ref().map(|(name, _)| name),
            "limit_figure": self.limit.as_ref().map(|(_, figure)| figure),
            "ratio": self.ratio(),
            "targets": self.targets.iter().map(ToString::to_string).collect::<Vec<_>>(),
            "met": self.met(),
        })
    }
}

/// Where lines go as they are made, and the table at the end.
pub struct Report {
    lines: Vec<Line>,
    json: bool,
}

impl Report {
    /// `json`: print each line as JSON on stdout as it comes, instead of
    /// the table at the end.
    pub fn new(json: bool) -> Self {
        Self {
            lines: Vec::new(),
            json,
        }
    }

    /// Keeps a line, says it on stderr (progress), and on stdout in JSON
    /// mode. Returns it, for workloads measured against it.
    pub fn add(&mut self, line: Line) -> Line {
        eprintln!("  {}", short(&line));
        if let Some(error) = &line.first_error {
            eprintln!("    {} calls failed; the first: {error}", line.errors);
        }
        if self.json {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{}", line.json());
        }
        self.lines.push(line.clone());
        line
    }

    pub fn lines(&self) -> &[Line] {
        &self.lines
    }

    /// The whole run as a Markdown table.
    pub fn table(&self) -> String {
        let mut out = String::from(
            "| workload | detail | figure | p50 / p99 / p99.9 ms | limit (same run) | ratio | target | met |\n\
             |---|---|---|---|---|---|---|---|\n",
        );
        for line in &self.lines {
            let latency = line.latency.map_or(String::new(), |[a, b, c]| {
                format!("{a:.2} / {b:.2} / {c:.2}")
            });
            let limit = line.limit.as_ref().map_or(String::new(), |(name, figure)| {
                format!("{name} {}", number(*figure))
            });
            let ratio = line.ratio().map_or(String::new(), |r| format!("{r:.3}"));
            let targets = line
                .targets
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ");
            let met = match line.met() {
                Some(true) => "yes",
                Some(false) => "**no**",
                None => "",
            };
            out.push_str(&format!(
                "| {} | {} | {} {} | {latency} | {limit} | {ratio} | {targets} | {met} |\n",
                line.workload,
                line.detail,
                number(line.figure),
                line.unit
            ));
        }
        out
    }

    /// Lines whose calls failed.
    pub fn failures(&self) -> Vec<&Line> {
        self.lines.iter().filter(|l| l.errors > 0).collect()
    }
}

fn short(line: &Line) -> String {
    let latency = line.latency.map_or(String::new(), |[a, b, c]| {
        format!("  p50 {a:.2} ms  p99 {b:.2} ms  p99.9 {c:.2} ms")
    });
    let ratio = line
        .ratio()
        .map_or(String::new(), |r| format!("  ratio {r:.3}"));
    format!(
        "{:<40} {:>12} {:<6}{latency}{ratio}",
        format!("{} ({})", line.workload, line.detail),
        number(line.figure),
        line.unit
    )
}

/// A figure as people read it: thousands grouped, two decimals when small.
fn number(value: f64) -> String {
    if value.abs() >= 100.0 {
        let whole = value.round() as i64;
        let digits = whole.abs().to_string();
        let mut grouped = String::new();
        for (i, digit) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i).is_multiple_of(3) {
                grouped.push(',');
            }
            grouped.push(digit);
        }
        if whole < 0 {
            grouped.insert(0, '-');
        }
        grouped
    } else {
        format!("{value:.2}")
    }
}
