//! PNG pictures of training and evaluation: training curves, reliability
//! diagrams, generic line charts (risk–coverage) and overlaid histograms
//! (out-of-distribution scores).
//!
//! Pictures are drawn with plotters' bitmap backend. Its `ab_glyph` text
//! renderer knows no system fonts, so DejaVu Sans is compiled into the binary
//! and registered as `sans-serif` on first use: charts then look the same on
//! every machine, including containers without fonts.
//!
//! Every function tolerates poor data rather than failing a training run over
//! a picture: non-finite values are skipped, empty series draw empty axes, and
//! a single value or a constant series gets a small range around it.

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::{register_font, FontStyle};
use serde::{Deserialize, Serialize};

/// DejaVu Sans, embedded so text renders without any font installed (see `assets/README.md`).
static FONT_BYTES: &[u8] = include_bytes!("../assets/DejaVuSans.ttf");

/// The family name plotters asks for by default, so axis labels find our font too.
const FONT_FAMILY: &str = "sans-serif";

/// Size of the two-panel training-curves picture.
const WIDE: (u32, u32) = (1000, 450);

/// Size of every single-panel picture.
const STANDARD: (u32, u32) = (640, 480);

/// Bars narrower than a pixel draw nothing new, so more bins only cost time.
const MAX_HISTOGRAM_BINS: usize = 640;

/// Series with at most this many points get markers; denser ones would smear.
const MARKER_LIMIT: usize = 50;

/// The Okabe–Ito colours (without yellow, which vanishes on white): they stay
/// distinct for the common forms of colour blindness.
const PALETTE: [RGBColor; 7] = [
    RGBColor(0, 114, 178),
    RGBColor(213, 94, 0),
    RGBColor(0, 158, 115),
    RGBColor(204, 121, 167),
    RGBColor(230, 159, 0),
    RGBColor(86, 180, 233),
    RGBColor(0, 0, 0),
];

/// Losses and accuracies after one training epoch, as recorded by the training loop.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EpochPoint {
    /// Epoch number, usually counting from 1.
    pub epoch: usize,
    /// Mean training loss over the epoch.
    pub train_loss: f64,
    /// Loss on the validation split after the epoch.
    pub val_loss: f64,
    /// Accuracy on the training split (0 to 1).
    pub train_accuracy: f64,
    /// Accuracy on the validation split (0 to 1).
    pub val_accuracy: f64,
}

/// Why a chart could not be written.
#[derive(Debug, thiserror::Error)]
pub enum ChartError {
    /// The embedded font did not parse; only a corrupted build can cause this.
    #[error("the embedded chart font could not be loaded")]
    Font,
    /// Plotters failed to draw or to encode and save the PNG.
    #[error("could not draw chart {path}: {message}")]
    Draw {
        /// The file that was being written.
        path: PathBuf,
        /// Plotters' error, as text because its type is generic over the backend.
        message: String,
    },
}

/// Draws training and validation loss (left) and accuracy (right) per epoch.
///
/// The picture is 1000×450 pixels; `path` should end in `.png`, since the
/// encoder is chosen by extension.
pub fn training_curves(path: &Path, title: &str, history: &[EpochPoint]) -> Result<(), ChartError> {
    let series = |value: fn(&EpochPoint) -> f64| -> Vec<(f64, f64)> {
        history
            .iter()
            .map(|point| (point.epoch as f64, value(point)))
            .collect()
    };
    let loss = [
        ("train", series(|p| p.train_loss)),
        ("validation", series(|p| p.val_loss)),
    ];
    let accuracy = [
        ("train", series(|p| p.train_accuracy)),
        ("validation", series(|p| p.val_accuracy)),
    ];
    render(path, WIDE, |root| {
        let body = root.titled(title, (FONT_FAMILY, 24))?;
        let panels = body.split_evenly((1, 2));
        let axes = |caption, y_label| Axes {
            caption,
            x_label: "epoch",
            y_label,
            whole_x: true,
        };
        for (area, (axes, lines)) in panels.iter().zip([
            (axes("Loss", "loss"), &loss),
            (axes("Accuracy", "accuracy"), &accuracy),
        ]) {
            draw_line_panel(area, &axes, lines)?;
        }
        Ok(())
    })
}

/// Draws accuracy against confidence for one or more predictors, with the
/// diagonal of perfect calibration for reference.
///
/// Each series is one `(mean confidence, accuracy)` point per non-empty
/// confidence bin: placed at the bin's mean confidence (not its centre), a
/// point's distance from the diagonal is exactly that bin's calibration gap.
/// Put the ECE in the series name if it should show in the legend.
pub fn reliability_diagram(
    path: &Path,
    title: &str,
    series: &[(&str, &[(f64, f64)])],
) -> Result<(), ChartError> {
    let lines: Vec<NamedPoints<'_>> = series
        .iter()
        .map(|&(name, points)| (name, finite(points.iter().copied())))
        .collect();
    render(path, STANDARD, |root| {
        let axes = Axes {
            caption: title,
            x_label: "confidence",
            y_label: "accuracy",
            whole_x: false,
        };
        let mut chart = cartesian(root, &axes, 0.0..1.0, 0.0..1.0)?;
        let diagonal = [(0.0, 0.0), (1.0, 1.0)];
        let grey = RGBColor(120, 120, 120);
        chart
            .draw_series(DashedLineSeries::new(diagonal, 6, 4, grey.stroke_width(1)))?
            .label("perfect calibration")
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], grey.stroke_width(1))
            });
        draw_lines(&mut chart, &lines)?;
        let mut drawn = trace(&diagonal);
        drawn.extend(lines.iter().flat_map(|(_, points)| trace(points)));
        draw_legend(&mut chart, &drawn, &Corner::ALL)
    })
}

/// Draws a generic line chart of one or more named series, such as
/// risk–coverage curves. Points are joined in the order given.
pub fn curves(
    path: &Path,
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[(&str, Vec<(f64, f64)>)],
) -> Result<(), ChartError> {
    let axes = Axes {
        caption: title,
        x_label,
        y_label,
        whole_x: false,
    };
    render(path, STANDARD, |root| draw_line_panel(root, &axes, series))
}

/// Draws overlaid histograms of one or more samples over shared bins, each
/// normalised to sum to 1 so samples of different sizes compare, as
/// translucent bars under a step outline.
///
/// `bins` is clamped to 1..=640: finer bars than pixels would draw nothing new.
pub fn histograms(
    path: &Path,
    title: &str,
    x_label: &str,
    series: &[(&str, &[f64])],
    bins: usize,
) -> Result<(), ChartError> {
    let edges = BinEdges::covering(
        series.iter().flat_map(|(_, values)| values.iter().copied()),
        bins,
    );
    let shares: Vec<(&str, Vec<f64>)> = series
        .iter()
        .map(|&(name, values)| (name, edges.shares(values)))
        .collect();
    let tallest = shares
        .iter()
        .flat_map(|(_, share)| share.iter().copied())
        .fold(0.0, f64::max);
    let y_range = 0.0..if tallest > 0.0 { tallest * 1.1 } else { 1.0 };
    let x_range = padded(Some((edges.lower, edges.upper())));
    let axes = Axes {
        caption: title,
        x_label,
        y_label: "share of examples",
        whole_x: false,
    };
    render(path, STANDARD, |root| {
        let mut chart = cartesian(root, &axes, x_range, y_range)?;
        let mut outlines = Vec::new();
        for (index, (name, share)) in shares.iter().enumerate() {
            let colour = PALETTE[index % PALETTE.len()];
            outlines.extend(draw_histogram(&mut chart, &edges, (name, share), colour)?);
        }
        // Bars fill everything under their tops, so only the upper corners can be free.
        draw_legend(&mut chart, &outlines, &Corner::UPPER)
    })
}

/// The chart type every picture here draws on.
type Chart<'a, 'b> =
    ChartContext<'a, BitMapBackend<'b>, Cartesian2d<RangedCoordf64, RangedCoordf64>>;

/// A named series of `(x, y)` points.
type NamedPoints<'a> = (&'a str, Vec<(f64, f64)>);

/// A drawing area of the bitmap backend.
type Area<'a> = DrawingArea<BitMapBackend<'a>, Shift>;

/// Plotters' result type for the bitmap backend (its error type does not depend on the lifetime).
type Drawn<T = ()> = DrawResult<T, BitMapBackend<'static>>;

/// Captions and axis descriptions of one panel.
struct Axes<'a> {
    caption: &'a str,
    x_label: &'a str,
    y_label: &'a str,
    /// The x-axis counts whole things (epochs), so only integer ticks make sense.
    whole_x: bool,
}

/// Makes sure the embedded font is registered, once per process.
fn ensure_font() -> Result<(), ChartError> {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    let registered = *REGISTERED
        .get_or_init(|| register_font(FONT_FAMILY, FontStyle::Normal, FONT_BYTES).is_ok());
    if registered {
        Ok(())
    } else {
        Err(ChartError::Font)
    }
}

/// Creates the PNG at `path` on a white background, runs `draw` on it and saves it.
fn render(
    path: &Path,
    size: (u32, u32),
    draw: impl FnOnce(&Area<'_>) -> Drawn,
) -> Result<(), ChartError> {
    ensure_font()?;
    let root = BitMapBackend::new(path, size).into_drawing_area();
    root.fill(&WHITE)
        .and_then(|()| draw(&root))
        .and_then(|()| root.present())
        .map_err(|error| ChartError::Draw {
            path: path.to_path_buf(),
            message: error.to_string(),
        })
}

/// Draws line series on axes ranged to fit all their finite points.
fn draw_line_panel(area: &Area<'_>, axes: &Axes<'_>, series: &[NamedPoints<'_>]) -> Drawn {
    let lines: Vec<NamedPoints<'_>> = series
        .iter()
        .map(|(name, points)| (*name, finite(points.iter().copied())))
        .collect();
    let all_points = || lines.iter().flat_map(|(_, points)| points.iter().copied());
    let x_range = padded(bounds(all_points().map(|(x, _)| x)));
    let y_range = padded(bounds(all_points().map(|(_, y)| y)));
    let mut chart = cartesian(area, axes, x_range, y_range)?;
    draw_lines(&mut chart, &lines)?;
    let drawn: Vec<(f64, f64)> = lines.iter().flat_map(|(_, points)| trace(points)).collect();
    draw_legend(&mut chart, &drawn, &Corner::ALL)
}

/// Sets up captioned axes with a light grid over the given ranges.
fn cartesian<'a, 'b>(
    area: &'a Area<'b>,
    axes: &Axes<'_>,
    x_range: Range<f64>,
    y_range: Range<f64>,
) -> Drawn<Chart<'a, 'b>> {
    let whole_x_ticks = whole_tick_count(&x_range);
    let mut chart = ChartBuilder::on(area)
        .caption(axes.caption, (FONT_FAMILY, 20))
        .margin(12)
        .x_label_area_size(42)
        .y_label_area_size(58)
        .build_cartesian_2d(x_range, y_range)?;
    let whole = |x: &f64| format!("{x:.0}");
    let mut mesh = chart.configure_mesh();
    mesh.x_desc(axes.x_label)
        .y_desc(axes.y_label)
        .label_style((FONT_FAMILY, 13))
        .axis_desc_style((FONT_FAMILY, 15))
        .bold_line_style(RGBColor(215, 215, 215))
        // One faint line between labelled ticks: plotters' default ten make a busy mesh.
        .max_light_lines(1)
        .light_line_style(RGBColor(238, 238, 238));
    if axes.whole_x {
        mesh.x_labels(whole_x_ticks).x_label_formatter(&whole);
    }
    mesh.draw()?;
    Ok(chart)
}

/// How many x labels to ask for so plotters picks a step of at least 1:
/// it never exceeds the count, and one label per unit fits when the count is
/// the number of whole values in the range.
fn whole_tick_count(range: &Range<f64>) -> usize {
    let whole_values = (range.end.floor() - range.start.ceil() + 1.0).max(1.0);
    (whole_values as usize).min(10)
}

/// Draws each series as a coloured line, with markers when it is sparse.
fn draw_lines(chart: &mut Chart<'_, '_>, series: &[NamedPoints<'_>]) -> Drawn {
    for (index, (name, points)) in series.iter().enumerate() {
        if points.is_empty() {
            continue;
        }
        let colour = PALETTE[index % PALETTE.len()];
        let marker = if points.len() <= MARKER_LIMIT { 4 } else { 0 };
        // Filled style: plotters draws the markers with the line's style.
        let style = colour.filled().stroke_width(2);
        let line = LineSeries::new(points.iter().copied(), style).point_size(marker);
        chart.draw_series(line)?.label(*name).legend(move |(x, y)| {
            PathElement::new(vec![(x, y), (x + 20, y)], colour.stroke_width(2))
        });
    }
    Ok(())
}

/// Draws one sample's histogram as translucent bars (so overlapping samples
/// stay visible) under a step outline, and returns points along the outline.
fn draw_histogram(
    chart: &mut Chart<'_, '_>,
    edges: &BinEdges,
    (name, share): (&str, &[f64]),
    colour: RGBColor,
) -> Drawn<Vec<(f64, f64)>> {
    if share.is_empty() {
        return Ok(Vec::new());
    }
    let bars = share
        .iter()
        .enumerate()
        .filter(|(_, &height)| height > 0.0)
        .map(|(bin, &height)| {
            let (left, right) = edges.bin(bin);
            Rectangle::new([(left, 0.0), (right, height)], colour.mix(0.25).filled())
        });
    chart.draw_series(bars)?;
    let outline = edges.step_outline(share);
    chart
        .draw_series(LineSeries::new(
            outline.iter().copied(),
            colour.stroke_width(2),
        ))?
        .label(name)
        .legend(move |(x, y)| {
            Rectangle::new([(x, y - 5), (x + 20, y + 5)], colour.mix(0.5).filled())
        });
    Ok(trace(&outline))
}

/// Draws the legend in whichever candidate corner hides the fewest of the
/// `drawn` points; nothing drawn means no series to name, so no legend.
fn draw_legend<'a, 'b: 'a>(
    chart: &mut Chart<'a, 'b>,
    drawn: &[(f64, f64)],
    candidates: &[Corner],
) -> Drawn {
    if drawn.is_empty() {
        return Ok(());
    }
    let corner = quiet_corner(drawn, candidates, &chart.x_range(), &chart.y_range());
    chart
        .configure_series_labels()
        .position(corner)
        .label_font((FONT_FAMILY, 14))
        .background_style(WHITE.mix(0.85))
        .border_style(RGBColor(160, 160, 160))
        .draw()
}

/// A corner of the plot where the legend may go.
#[derive(Debug, Clone, Copy)]
enum Corner {
    UpperRight,
    UpperLeft,
    LowerRight,
    LowerLeft,
}

impl Corner {
    /// Every corner, in order of preference for the legend.
    const ALL: [Corner; 4] = [
        Corner::UpperRight,
        Corner::UpperLeft,
        Corner::LowerRight,
        Corner::LowerLeft,
    ];

    /// The upper corners, in order of preference for the legend.
    const UPPER: [Corner; 2] = [Corner::UpperRight, Corner::UpperLeft];

    /// Whether a point at fractions `(fx, fy)` of the axes lies under a legend
    /// here: the outer 40% of the width by the outer 35% of the height, about
    /// what a legend of a few entries covers.
    fn covers(self, fx: f64, fy: f64) -> bool {
        let (right, upper) = match self {
            Corner::UpperRight => (true, true),
            Corner::UpperLeft => (false, true),
            Corner::LowerRight => (true, false),
            Corner::LowerLeft => (false, false),
        };
        let in_width = if right { fx > 0.6 } else { fx < 0.4 };
        let in_height = if upper { fy > 0.65 } else { fy < 0.35 };
        in_width && in_height
    }

    fn position(self) -> SeriesLabelPosition {
        match self {
            Corner::UpperRight => SeriesLabelPosition::UpperRight,
            Corner::UpperLeft => SeriesLabelPosition::UpperLeft,
            Corner::LowerRight => SeriesLabelPosition::LowerRight,
            Corner::LowerLeft => SeriesLabelPosition::LowerLeft,
        }
    }
}

/// The candidate corner covering the fewest data points, so the legend hides
/// as little as possible; ties go to the earlier candidate.
fn quiet_corner(
    points: &[(f64, f64)],
    candidates: &[Corner],
    x_range: &Range<f64>,
    y_range: &Range<f64>,
) -> SeriesLabelPosition {
    let fractions: Vec<(f64, f64)> = points
        .iter()
        .map(|&(x, y)| {
            let fx = (x - x_range.start) / (x_range.end - x_range.start);
            let fy = (y - y_range.start) / (y_range.end - y_range.start);
            (fx, fy)
        })
        .collect();
    let covered = |corner: &Corner| {
        fractions
            .iter()
            .filter(|&&(fx, fy)| corner.covers(fx, fy))
            .count()
    };
    candidates
        .iter()
        .copied()
        .min_by_key(covered)
        .unwrap_or(Corner::UpperRight)
        .position()
}

/// Twenty points along each segment of a polyline, so a long segment
/// crossing a corner counts as occupying it.
fn trace(points: &[(f64, f64)]) -> Vec<(f64, f64)> {
    const STEPS: usize = 20;
    let mut traced: Vec<(f64, f64)> = points.first().copied().into_iter().collect();
    for pair in points.windows(2) {
        let ((x0, y0), (x1, y1)) = (pair[0], pair[1]);
        traced.extend((1..=STEPS).map(|step| {
            let t = step as f64 / STEPS as f64;
            (x0 + t * (x1 - x0), y0 + t * (y1 - y0))
        }));
    }
    traced
}

/// Keeps only points with both coordinates finite; plotters cannot place NaN or infinity.
fn finite(points: impl Iterator<Item = (f64, f64)>) -> Vec<(f64, f64)> {
    points
        .filter(|(x, y)| x.is_finite() && y.is_finite())
        .collect()
}

/// Smallest and largest finite value, if there is one.
fn bounds(values: impl Iterator<Item = f64>) -> Option<(f64, f64)> {
    values
        .filter(|value| value.is_finite())
        .fold(None, |acc, value| match acc {
            None => Some((value, value)),
            Some((low, high)) => Some((low.min(value), high.max(value))),
        })
}

/// `bounds` made into a span plotters can scale: no data gives 0 to 1, a
/// (nearly) constant value gets a unit span around it, because an axis of zero
/// width cannot be scaled, and a span wider than `f64` can hold is cut to the
/// middle of the number line.
///
/// "Nearly" is relative to the values and to 1, so data varying only below
/// 1e-12 is shown as constant rather than risking plotters' tick search.
fn usable_span(bounds: Option<(f64, f64)>) -> (f64, f64) {
    match bounds {
        None => (0.0, 1.0),
        Some((low, high)) if !(high - low).is_finite() => (f64::MIN / 4.0, f64::MAX / 4.0),
        Some((low, high)) if high - low <= low.abs().max(high.abs()).max(1.0) * 1e-12 => {
            (low - 0.5, high + 0.5)
        }
        Some(span) => span,
    }
}

/// An axis range showing `bounds` with 5% to spare on each side, so markers
/// are not cut by the frame.
fn padded(bounds: Option<(f64, f64)>) -> Range<f64> {
    let (low, high) = usable_span(bounds);
    let margin = (high - low) * 0.05;
    low - margin..high + margin
}

/// Equal-width histogram bins shared by every series of one chart.
struct BinEdges {
    lower: f64,
    width: f64,
    count: usize,
}

impl BinEdges {
    /// `bins` bins (clamped to 1..=640) spanning every finite value.
    fn covering(values: impl Iterator<Item = f64>, bins: usize) -> Self {
        let count = bins.clamp(1, MAX_HISTOGRAM_BINS);
        let (lower, upper) = usable_span(bounds(values));
        BinEdges {
            lower,
            width: (upper - lower) / count as f64,
            count,
        }
    }

    fn upper(&self) -> f64 {
        self.lower + self.width * self.count as f64
    }

    /// Left and right edge of bin `index`.
    fn bin(&self, index: usize) -> (f64, f64) {
        let left = self.lower + self.width * index as f64;
        (left, left + self.width)
    }

    /// Share of the finite `values` in each bin; empty when there are none.
    fn shares(&self, values: &[f64]) -> Vec<f64> {
        let mut counts = vec![0usize; self.count];
        for value in values.iter().filter(|value| value.is_finite()) {
            // The maximum lands exactly on the top edge: keep it in the last bin.
            let index = ((value - self.lower) / self.width).floor().max(0.0) as usize;
            counts[index.min(self.count - 1)] += 1;
        }
        let total: usize = counts.iter().sum();
        if total == 0 {
            return Vec::new();
        }
        counts
            .iter()
            .map(|&count| count as f64 / total as f64)
            .collect()
    }

    /// The outline of a histogram: up each left edge, across the top, down at the end.
    fn step_outline(&self, share: &[f64]) -> Vec<(f64, f64)> {
        let mut outline = vec![(self.lower, 0.0)];
        for (index, &height) in share.iter().enumerate() {
            let (left, right) = self.bin(index);
            outline.push((left, height));
            outline.push((right, height));
        }
        outline.push((self.upper(), 0.0));
        outline
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Sample<'a> = (&'a str, &'a [f64]);

    /// A named series of reliability points.
    type Calibrated<'a> = (&'a str, &'a [(f64, f64)]);

    const PNG_SIGNATURE: [u8; 8] = [0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A];

    fn assert_png(path: &Path) {
        let bytes = std::fs::read(path).unwrap();
        assert!(
            bytes.len() > PNG_SIGNATURE.len(),
            "{} is empty",
            path.display()
        );
        assert_eq!(bytes[..8], PNG_SIGNATURE, "{} is not a PNG", path.display());
    }

    fn epoch(epoch: usize, loss: f64, accuracy: f64) -> EpochPoint {
        EpochPoint {
            epoch,
            train_loss: loss,
            val_loss: loss * 1.2,
            train_accuracy: accuracy,
            val_accuracy: accuracy * 0.95,
        }
    }

    #[test]
    fn training_curves_are_written_as_png() {
        let dir = tempfile::tempdir().unwrap();
        let history: Vec<EpochPoint> = (1..=8)
            .map(|e| epoch(e, 1.0 / e as f64, 0.5 + 0.05 * e as f64))
            .collect();
        let path = dir.path().join("training.png");
        training_curves(&path, "Training", &history).unwrap();
        assert_png(&path);
    }

    #[test]
    fn training_curves_survive_no_one_and_broken_epochs() {
        let dir = tempfile::tempdir().unwrap();
        let cases = [
            vec![],
            vec![epoch(1, 0.7, 0.6)],
            vec![
                epoch(1, f64::NAN, 0.5),
                epoch(2, f64::INFINITY, f64::NAN),
                epoch(3, 0.4, 0.5),
            ],
            vec![epoch(1, 0.5, 0.5), epoch(2, 0.5, 0.5)],
        ];
        for (index, history) in cases.iter().enumerate() {
            let path = dir.path().join(format!("training-{index}.png"));
            training_curves(&path, "Degenerate", history).unwrap();
            assert_png(&path);
        }
    }

    #[test]
    fn reliability_diagrams_are_written_for_several_predictors() {
        let dir = tempfile::tempdir().unwrap();
        let deterministic = [(0.45, 0.3), (0.7, 0.5), (0.95, 0.8)];
        let mc = [(0.15, 0.1), (0.4, 0.35), (0.68, 0.62), (0.9, 0.86)];
        let path = dir.path().join("reliability.png");
        let series = [
            ("deterministic (ECE 0.14)", &deterministic[..]),
            ("MC dropout (ECE 0.05)", &mc[..]),
        ];
        reliability_diagram(&path, "Reliability", &series).unwrap();
        assert_png(&path);
    }

    #[test]
    fn reliability_diagrams_survive_no_points_and_nan_points() {
        let dir = tempfile::tempdir().unwrap();
        let broken = [(f64::NAN, 0.5), (0.9, f64::INFINITY), (0.8, 0.8)];
        let cases: [Vec<Calibrated<'_>>; 3] =
            [vec![], vec![("none", &[])], vec![("broken", &broken)]];
        for (index, series) in cases.iter().enumerate() {
            let path = dir.path().join(format!("reliability-{index}.png"));
            reliability_diagram(&path, "Degenerate", series).unwrap();
            assert_png(&path);
        }
    }

    #[test]
    fn curves_are_written_as_png() {
        let dir = tempfile::tempdir().unwrap();
        let dense: Vec<(f64, f64)> = (1..=200)
            .map(|i| (i as f64 / 200.0, 0.3 * (i as f64 / 200.0).powi(2)))
            .collect();
        let sparse = vec![(0.2, 0.0), (0.6, 0.05), (1.0, 0.3)];
        let path = dir.path().join("risk.png");
        let series = [("MC dropout", dense), ("max softmax", sparse)];
        curves(&path, "Risk–coverage", "coverage", "risk", &series).unwrap();
        assert_png(&path);
    }

    #[test]
    fn curves_survive_empty_single_constant_and_nan_series() {
        let dir = tempfile::tempdir().unwrap();
        let cases: [Vec<NamedPoints<'_>>; 5] = [
            vec![],
            vec![("empty", vec![])],
            vec![("single", vec![(3.0, 3.0)])],
            vec![("flat", vec![(1.0, 2.0), (2.0, 2.0), (3.0, 2.0)])],
            vec![(
                "nan",
                vec![(f64::NAN, 1.0), (0.5, f64::NAN), (f64::INFINITY, 2.0)],
            )],
        ];
        for (index, series) in cases.iter().enumerate() {
            let path = dir.path().join(format!("curves-{index}.png"));
            curves(&path, "Degenerate", "x", "y", series).unwrap();
            assert_png(&path);
        }
    }

    #[test]
    fn extreme_ranges_do_not_break_the_axes() {
        let dir = tempfile::tempdir().unwrap();
        let cases: [Vec<NamedPoints<'_>>; 2] = [
            vec![("huge", vec![(f64::MIN, f64::MIN), (f64::MAX, f64::MAX)])],
            vec![("tiny", vec![(0.0, 0.0), (1e-300, 1e-300)])],
        ];
        for (index, series) in cases.iter().enumerate() {
            let path = dir.path().join(format!("extreme-{index}.png"));
            curves(&path, "Extreme", "x", "y", series).unwrap();
            assert_png(&path);
        }
    }

    #[test]
    fn histograms_are_written_as_png() {
        let dir = tempfile::tempdir().unwrap();
        let in_domain: Vec<f64> = (0..500).map(|i| ((i * 37) % 100) as f64 / 400.0).collect();
        let out_of_domain: Vec<f64> = (0..120)
            .map(|i| 0.3 + ((i * 53) % 100) as f64 / 200.0)
            .collect();
        let path = dir.path().join("ood.png");
        let series = [
            ("in-domain", in_domain.as_slice()),
            ("out-of-domain", out_of_domain.as_slice()),
        ];
        histograms(&path, "Predictive entropy", "entropy (nats)", &series, 30).unwrap();
        assert_png(&path);
    }

    #[test]
    fn histograms_survive_empty_constant_nan_and_zero_bins() {
        let dir = tempfile::tempdir().unwrap();
        let constant = [2.0; 10];
        let broken = [f64::NAN, 1.0, f64::NEG_INFINITY, 3.0];
        let extreme = [f64::MIN, 0.0, f64::MAX];
        let tiny = [0.0, 1e-300];
        let cases: [(Vec<Sample<'_>>, usize); 7] = [
            (vec![], 10),
            (vec![("empty", &[])], 10),
            (vec![("constant", &constant)], 10),
            (vec![("broken", &broken), ("single", &[2.5])], 0),
            (vec![("many bins", &broken)], usize::MAX),
            (vec![("extreme", &extreme)], 10),
            (vec![("tiny", &tiny)], 10),
        ];
        for (index, (series, bins)) in cases.iter().enumerate() {
            let path = dir.path().join(format!("histogram-{index}.png"));
            histograms(&path, "Degenerate", "score", series, *bins).unwrap();
            assert_png(&path);
        }
    }

    #[test]
    fn an_unwritable_path_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("missing").join("chart.png");
        let error = curves(&path, "t", "x", "y", &[]).unwrap_err();
        assert!(matches!(error, ChartError::Draw { .. }), "{error}");
    }

    #[test]
    fn the_legend_goes_where_the_data_is_not() {
        let rising = trace(&[(0.0, 0.0), (1.0, 1.0)]);
        let corner = quiet_corner(&rising, &Corner::ALL, &(0.0..1.0), &(0.0..1.0));
        assert!(matches!(corner, SeriesLabelPosition::UpperLeft));
        let falling = trace(&[(0.0, 1.0), (1.0, 0.0)]);
        let corner = quiet_corner(&falling, &Corner::ALL, &(0.0..1.0), &(0.0..1.0));
        assert!(matches!(corner, SeriesLabelPosition::UpperRight));
    }

    #[test]
    fn histogram_shares_sum_to_one_and_keep_the_maximum() {
        let edges = BinEdges::covering([0.0, 1.0].into_iter(), 4);
        let shares = edges.shares(&[0.0, 0.1, 0.5, 1.0]);
        assert_eq!(shares, vec![0.5, 0.0, 0.25, 0.25]);
    }
}
