//! The sweep as an SVG: send-to-deliver latency against offered load, and deliveries per
//! second with server CPU per delivery against chat size.

use std::path::Path;

use plotters::prelude::*;

use crate::{Error, LoadSummary, Result, SweepSummary};

pub fn write_plot(path: &Path, sweep: &SweepSummary) -> Result<()> {
    if path.extension().and_then(|e| e.to_str()) != Some("svg") {
        return Err(Error::Invalid(format!(
            "--plot {}: only SVG is written (name the file .svg)",
            path.display()
        )));
    }
    let root = SVGBackend::new(path, (1200, 480)).into_drawing_area();
    let fail = |e: &dyn std::fmt::Display| Error::Plot(e.to_string());
    root.fill(&WHITE).map_err(|e| fail(&e))?;
    let (left, right) = root.split_horizontally(600);
    latency_against_load(&left, &sweep.by_rate).map_err(|e| fail(&e))?;
    throughput_against_size(&right, &sweep.by_size).map_err(|e| fail(&e))?;
    root.present().map_err(|e| fail(&e))?;
    Ok(())
}

type Area<'a> = DrawingArea<SVGBackend<'a>, plotters::coord::Shift>;
/// A legend name, a colour and its points.
type Series<'a> = (&'a str, RGBColor, Vec<(f64, f64)>);
type DrawResult = std::result::Result<(), DrawingAreaErrorKind<std::io::Error>>;

fn latency_against_load(area: &Area<'_>, runs: &[LoadSummary]) -> DrawResult {
    let max_x = runs.iter().map(|r| r.offered_rate).fold(1.0, f64::max) * 1.1;
    let max_y = runs
        .iter()
        .map(|r| r.send_to_deliver.p99_ms)
        .fold(1.0, f64::max)
        * 1.1;
    let mut chart = ChartBuilder::on(area)
        .caption(
            "send-to-deliver latency against offered load",
            ("sans-serif", 18),
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(56)
        .build_cartesian_2d(0.0..max_x, 0.0..max_y)?;
    chart
        .configure_mesh()
        .x_desc("offered messages/s")
        .y_desc("ms")
        .draw()?;
    let series = [
        (
            "p50",
            BLUE,
            runs.iter()
                .map(|r| (r.offered_rate, r.send_to_deliver.p50_ms))
                .collect::<Vec<_>>(),
        ),
        (
            "p99",
            RED,
            runs.iter()
                .map(|r| (r.offered_rate, r.send_to_deliver.p99_ms))
                .collect(),
        ),
    ];
    lines_with_points(&mut chart, series)
}

fn throughput_against_size(area: &Area<'_>, runs: &[LoadSummary]) -> DrawResult {
    let max_y = runs
        .iter()
        .map(|r| r.deliveries_per_s.max(r.server_cpu_us_per_delivery))
        .fold(1.0, f64::max)
        * 1.1;
    let mut chart = ChartBuilder::on(area)
        .caption("throughput against chat size", ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(56)
        .build_cartesian_2d((5.0..2_000.0).log_scale(), 0.0..max_y)?;
    chart
        .configure_mesh()
        .x_desc("members per chat (log)")
        .y_desc("deliveries/s; server CPU µs per delivery")
        .draw()?;
    let series = [
        (
            "deliveries/s",
            BLUE,
            runs.iter()
                .map(|r| (r.members as f64, r.deliveries_per_s))
                .collect::<Vec<_>>(),
        ),
        (
            "server CPU µs per delivery",
            RED,
            runs.iter()
                .map(|r| (r.members as f64, r.server_cpu_us_per_delivery))
                .collect(),
        ),
    ];
    lines_with_points(&mut chart, series)
}

/// Each series as a line through circled points, with a legend.
fn lines_with_points<'a, X, Y>(
    chart: &mut ChartContext<'a, SVGBackend<'a>, Cartesian2d<X, Y>>,
    series: [Series<'_>; 2],
) -> DrawResult
where
    X: Ranged<ValueType = f64>,
    Y: Ranged<ValueType = f64>,
{
    for (name, colour, points) in series {
        chart
            .draw_series(LineSeries::new(points.clone(), colour))?
            .label(name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], colour));
        chart.draw_series(
            points
                .into_iter()
                .map(|p| Circle::new(p, 3, colour.filled())),
        )?;
    }
    chart
        .configure_series_labels()
        .border_style(BLACK)
        .background_style(WHITE)
        .draw()
}
