//! `--plot FILE.svg`: the bench result drawn as SVG (plotters' SVG backend writes text as
//! `<text>` elements, so no font files are needed). One panel per figure the result has:
//! latency over time (p50, p99 and max per slot), latency by percentile (on a "nines" axis,
//! where p90, p99 and p99.9 are equally spaced), and throughput over time.

use std::path::Path;

use anyhow::anyhow;
use plotters::coord::Shift;
use plotters::prelude::*;

use super::latency::{LatencySlot, LatencySummary};
use super::report::BenchResult;

const WIDTH_PX: u32 = 1000;
const PANEL_HEIGHT_PX: u32 = 360;
const FONT: &str = "sans-serif";
const PRODUCE_COLOUR: RGBColor = RGBColor(31, 119, 180);
const E2E_COLOUR: RGBColor = RGBColor(214, 39, 40);

type Panel<'a> = DrawingArea<SVGBackend<'a>, Shift>;

/// One labelled line of a panel.
struct Series {
    label: String,
    style: ShapeStyle,
    points: Vec<(f64, f64)>,
}

/// What a panel shows besides its series.
struct Frame<'a> {
    title: &'a str,
    x_desc: &'a str,
    y_desc: &'a str,
    /// Labels the x axis with percentiles on a nines axis instead of plain numbers.
    nines_axis: bool,
}

pub fn write_svg(path: &Path, result: &BenchResult) -> anyhow::Result<()> {
    let latencies: Vec<(&str, RGBColor, &LatencySummary)> = [
        ("produce", PRODUCE_COLOUR, &result.produce_latency),
        ("end-to-end", E2E_COLOUR, &result.end_to_end_latency),
    ]
    .into_iter()
    .filter_map(|(name, colour, summary)| Some((name, colour, summary.as_ref()?)))
    .collect();
    let panel_count = if latencies.is_empty() { 1 } else { 3 };
    let root = SVGBackend::new(path, (WIDTH_PX, PANEL_HEIGHT_PX * panel_count)).into_drawing_area();
    root.fill(&WHITE).map_err(plot_error)?;
    let panels = root.split_evenly((panel_count as usize, 1));
    let title = format!("ringlog bench {} ({})", result.kind, result.settings.topic);
    let throughput_frame = |title| Frame {
        title,
        x_desc: "time since start (s)",
        y_desc: "messages per second",
        nines_axis: false,
    };
    if latencies.is_empty() {
        draw(&panels[0], &throughput_frame(&title), throughput(result))?;
    } else {
        let over_time_title = format!("{title}: latency over time");
        let over_time = Frame {
            title: &over_time_title,
            x_desc: "time since start (s)",
            y_desc: "latency (ms)",
            nines_axis: false,
        };
        let by_percentile = Frame {
            title: "Latency by percentile (last point: max)",
            x_desc: "percentile",
            y_desc: "latency (ms)",
            nines_axis: true,
        };
        draw(&panels[0], &over_time, latency_over_time(&latencies))?;
        draw(
            &panels[1],
            &by_percentile,
            latency_by_percentile(&latencies),
        )?;
        draw(
            &panels[2],
            &throughput_frame("Throughput over time"),
            throughput(result),
        )?;
    }
    root.present().map_err(plot_error)?;
    Ok(())
}

fn plot_error<E: std::fmt::Display>(error: E) -> anyhow::Error {
    anyhow!("drawing the plot: {error}")
}

/// Reads one figure of a latency slot.
type SlotFigure = fn(&LatencySlot) -> f64;

fn latency_over_time(latencies: &[(&str, RGBColor, &LatencySummary)]) -> Vec<Series> {
    let mut series = Vec::new();
    for (name, colour, summary) in latencies {
        let slot_middle_s = summary.slot_ms as f64 / 2000.0;
        let figures: [(&str, SlotFigure); 3] = [
            ("p50", |s| s.p50_ms),
            ("p99", |s| s.p99_ms),
            ("max", |s| s.max_ms),
        ];
        for (figure, value) in figures {
            let style = match figure {
                "p99" => colour.stroke_width(2),
                "max" => colour.mix(0.4).stroke_width(1),
                _ => colour.stroke_width(1),
            };
            series.push(Series {
                label: format!("{name} {figure}"),
                style,
                points: summary
                    .over_time
                    .iter()
                    .map(|slot| (slot.t_s + slot_middle_s, value(slot)))
                    .collect(),
            });
        }
    }
    series
}

/// Nines of a percentile: p90 is 1, p99 is 2, p99.9 is 3.
fn nines(percentile: f64) -> f64 {
    -(1.0 - percentile / 100.0).max(1e-9).log10()
}

fn percentile_label(nines: f64) -> String {
    let percentile = 100.0 * (1.0 - 10f64.powf(-nines));
    let text = format!("{percentile:.4}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    format!("p{text}")
}

/// The maximum (percentile 100) has no place on a nines axis; it is drawn half a nine after
/// the last finite percentile.
fn latency_by_percentile(latencies: &[(&str, RGBColor, &LatencySummary)]) -> Vec<Series> {
    latencies
        .iter()
        .map(|(name, colour, summary)| {
            let mut points: Vec<(f64, f64)> = summary
                .percentiles
                .iter()
                .filter(|p| p.percentile < 100.0)
                .map(|p| (nines(p.percentile), p.latency_ms))
                .collect();
            let end = points.last().map_or(0.0, |(x, _)| *x);
            points.push((end + 0.5, summary.max_ms));
            Series {
                label: name.to_string(),
                style: colour.stroke_width(2),
                points,
            }
        })
        .collect()
}

fn throughput(result: &BenchResult) -> Vec<Series> {
    let samples = &result.throughput_over_time;
    let mut series = Vec::new();
    if result.produce.is_some() {
        series.push(Series {
            label: "produced".into(),
            style: PRODUCE_COLOUR.stroke_width(2),
            points: samples
                .iter()
                .map(|s| (s.t_s, s.produced_msgs_per_s))
                .collect(),
        });
    }
    if result.consume.is_some() {
        series.push(Series {
            label: "consumed".into(),
            style: E2E_COLOUR.stroke_width(2),
            points: samples
                .iter()
                .map(|s| (s.t_s, s.consumed_msgs_per_s))
                .collect(),
        });
    }
    series
}

/// Upper end of an axis: a little above the data, never empty.
fn axis_end(values: impl Iterator<Item = f64>) -> f64 {
    let max = values.fold(0.0, f64::max);
    if max > 0.0 {
        max * 1.05
    } else {
        1.0
    }
}

/// Draws one panel: axes from zero to a little past the data, each series as a line with a
/// dot at every point (so a series of one point still shows), and a legend.
fn draw(panel: &Panel<'_>, frame: &Frame<'_>, series: Vec<Series>) -> anyhow::Result<()> {
    let all_points = || series.iter().flat_map(|s| s.points.iter());
    let x_end = axis_end(all_points().map(|p| p.0));
    let y_end = axis_end(all_points().map(|p| p.1));
    let mut chart = ChartBuilder::on(panel)
        .caption(frame.title, (FONT, 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(90)
        .build_cartesian_2d(0.0..x_end, 0.0..y_end)
        .map_err(plot_error)?;
    let mut mesh = chart.configure_mesh();
    mesh.x_desc(frame.x_desc).y_desc(frame.y_desc);
    let nines_label = |x: &f64| percentile_label(*x);
    if frame.nines_axis {
        // One label per whole nine: p0, p90, p99, p99.9...
        mesh.x_labels(x_end.floor() as usize + 1)
            .x_label_formatter(&nines_label);
    }
    mesh.draw().map_err(plot_error)?;
    for Series {
        label,
        style,
        points,
    } in series
    {
        chart
            .draw_series(LineSeries::new(points.iter().copied(), style))
            .map_err(plot_error)?
            .label(label)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], style));
        chart
            .draw_series(
                points
                    .into_iter()
                    .map(|p| Circle::new(p, 2, style.filled())),
            )
            .map_err(plot_error)?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(plot_error)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nines_axis() {
        assert!((nines(90.0) - 1.0).abs() < 1e-9);
        assert!((nines(99.9) - 3.0).abs() < 1e-9);
        assert_eq!(percentile_label(1.0), "p90");
        assert_eq!(percentile_label(3.0), "p99.9");
        assert_eq!(percentile_label(0.0), "p0");
    }
}
