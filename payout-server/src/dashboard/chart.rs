//! The chart of paid totals per month, drawn on the server as inline SVG: no script, one chart per
//! currency (amounts are never converted), each with a title and a description, labelled axes, the
//! exact amount of every month paid in as text on its bar, and every month's figures in a table
//! under it.
//!
//! Geometry is integer arithmetic on minor units (a bar's height is its amount over the axis's top,
//! in whole pixels): no floating point touches an amount.

use chrono::NaiveDate;
use maud::{Markup, html};
use payout_core::money::{Currency, Money};
use payout_core::store::MonthTotal;

use super::components::{amount_text, money};

/// Left margin (the y axis's labels), top (the values over the bars), bottom (months, axis title).
const LEFT: i64 = 110;
const TOP: i64 = 30;
const BOTTOM: i64 = 56;
const RIGHT: i64 = 16;
/// The plot's height, and each month's width.
const PLOT: i64 = 200;
const SLOT: i64 = 76;
/// Ticks on the y axis above 0.
const TICKS: i64 = 4;

/// One chart per currency of `series` (as [`PayoutService::paid_by_month`](payout_core::PayoutService::paid_by_month)
/// answers it: each currency's months in order), or a sentence saying nothing was paid.
pub(crate) fn paid_per_month(series: &[MonthTotal], months: u32) -> Markup {
    let mut currencies: Vec<Currency> = series.iter().map(|t| t.currency).collect();
    currencies.dedup();
    html! {
        section aria-labelledby="chart-heading" {
            h2 id="chart-heading" { "Paid per month" }
            p { "Payouts now PAID, by the month they were created in (UTC), the last " (months) " months. Amounts per currency, never converted." }
            @if currencies.is_empty() { p id="chart-empty" { "Nothing paid in these months." } }
            @for currency in currencies {
                @let rows: Vec<&MonthTotal> = series.iter().filter(|t| t.currency == currency).collect();
                (chart(currency, &rows))
            }
        }
    }
}

/// "Jan 2025".
fn month_label(month: NaiveDate) -> String {
    month.format("%b %Y").to_string()
}

/// The smallest 1, 2 or 5 times a power of ten that is at least `x` (at least 1).
fn nice(x: i128) -> i128 {
    let mut power = 1i128;
    loop {
        for m in [1, 2, 5] {
            if m * power >= x {
                return m * power;
            }
        }
        power = power.saturating_mul(10);
    }
}

/// The y axis's step in minor units: [`TICKS`] steps reach `max`.
fn step_for(max: i128) -> i128 {
    let ticks = i128::from(TICKS);
    nice(((max + ticks - 1) / ticks).max(1))
}

/// A bar's height in pixels: `amount` of `top`, rounded to the nearest pixel.
fn height(amount: i128, top: i128) -> i64 {
    if amount <= 0 || top <= 0 {
        return 0;
    }
    let px = (amount * i128::from(PLOT) + top / 2) / top;
    i64::try_from(px.min(i128::from(PLOT))).unwrap_or(PLOT)
}

fn minor(m: &Money) -> i128 {
    // Paid totals come from 64-bit tallies, so they fit; an amount that did not would draw no bar.
    m.to_minor_units().map(i128::from).unwrap_or(0)
}

fn chart(currency: Currency, rows: &[&MonthTotal]) -> Markup {
    let code = currency.code();
    let id = format!("chart-{code}");
    let max = rows.iter().map(|t| minor(&t.amount)).max().unwrap_or(0);
    let step = step_for(max);
    let top = step * i128::from(TICKS);
    let width = LEFT + SLOT * rows.len() as i64 + RIGHT;
    let height_all = TOP + PLOT + BOTTOM;
    let base = TOP + PLOT;
    let description = rows
        .iter()
        .map(|t| format!("{}: {} ({} payouts)", month_label(t.month), money(&t.amount), t.count))
        .collect::<Vec<_>>()
        .join("; ");
    html! {
        figure.chart id=(id) {
            svg xmlns="http://www.w3.org/2000/svg" role="img" viewBox=(format!("0 0 {width} {height_all}"))
                width=(width) height=(height_all) aria-labelledby=(format!("{id}-title {id}-desc")) {
                title id=(format!("{id}-title")) { "Paid per month in " (code) }
                desc id=(format!("{id}-desc")) { "Paid payouts by month of creation, in " (code) ": " (description) "." }
                // The y axis: gridlines and the amount at each tick.
                @for i in 0..=TICKS {
                    @let y = base - PLOT * i / TICKS;
                    line.chart-grid x1=(LEFT) x2=(width - RIGHT) y1=(y) y2=(y) {}
                    text.chart-text x=(LEFT - 6) y=(y + 4) text-anchor="end" {
                        (amount_text(&Money::from_minor_units(i64::try_from(step * i128::from(i)).unwrap_or(i64::MAX), currency)))
                    }
                }
                line.chart-axis x1=(LEFT) x2=(LEFT) y1=(TOP) y2=(base) {}
                line.chart-axis x1=(LEFT) x2=(width - RIGHT) y1=(base) y2=(base) {}
                text.chart-text x="14" y=(TOP + PLOT / 2) text-anchor="middle"
                    transform=(format!("rotate(-90 14 {})", TOP + PLOT / 2)) { "Paid (" (code) ")" }
                text.chart-text x=(LEFT + (width - RIGHT - LEFT) / 2) y=(height_all - 8) text-anchor="middle" {
                    "Month created"
                }
                @for (i, t) in rows.iter().enumerate() {
                    @let x = LEFT + SLOT * i as i64;
                    @let h = height(minor(&t.amount), top);
                    @let label = format!("{}: {} ({} payouts)", month_label(t.month), money(&t.amount), t.count);
                    g {
                        rect.chart-bar x=(x + 12) y=(base - h) width=(SLOT - 24) height=(h) {
                            title { (label) }
                        }
                        // Months with nothing paid have no label: the description and the table say 0.
                        @if minor(&t.amount) != 0 {
                            text.chart-value id=(format!("{id}-{}", t.month.format("%Y-%m"))) x=(x + SLOT / 2)
                                y=(base - h - 5) text-anchor="middle" { (amount_text(&t.amount)) }
                        }
                        text.chart-text x=(x + SLOT / 2) y=(base + 16) text-anchor="middle" { (month_label(t.month)) }
                    }
                }
            }
            figcaption {
                details {
                    summary { "Paid per month in " (code) ": the figures" }
                    table id=(format!("{id}-data")) {
                        thead { tr { th scope="col" { "Month" } th.amount scope="col" { "Payouts" } th.amount scope="col" { "Paid" } } }
                        tbody {
                            @for t in rows {
                                tr { th scope="row" { (month_label(t.month)) } td.amount { (t.count) } td.amount { (money(&t.amount)) } }
                            }
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use payout_core::store::month_range;

    fn series(code: Currency, minors: &[i64]) -> Vec<MonthTotal> {
        let months = month_range(NaiveDate::from_ymd_opt(2025, 3, 1).unwrap(), minors.len() as u32);
        months
            .into_iter()
            .zip(minors)
            .map(|(month, &m)| MonthTotal {
                month,
                currency: code,
                count: u64::from(m > 0),
                amount: Money::from_minor_units(m, code),
            })
            .collect()
    }

    #[test]
    fn the_axis_steps_are_round_numbers() {
        assert_eq!(nice(1), 1);
        assert_eq!(nice(3), 5);
        assert_eq!(nice(11), 20);
        assert_eq!(nice(200), 200);
        assert_eq!(nice(201), 500);
        assert_eq!(step_for(0), 1);
        // 1,234.56 over four steps: 308.64 a step, so 500.00 a step and 2,000.00 at the top.
        assert_eq!(step_for(123_456), 50_000);
        assert_eq!(height(123_456, 200_000), 123);
        assert_eq!(height(200_000, 200_000), PLOT);
        assert_eq!(height(0, 200_000), 0);
    }

    #[test]
    fn each_currency_has_its_chart_with_exact_amounts_as_text() {
        let mut rows = series(Currency::KES, &[0, 123_456, 5]);
        rows.extend(series(Currency::USD, &[700, 0, 0]));
        let html = paid_per_month(&rows, 3).into_string();
        for code in ["KES", "USD"] {
            assert!(
                html.contains(&format!(r#"<figure class="chart" id="chart-{code}">"#)),
                "{html}"
            );
            assert!(
                html.contains(&format!(r#"aria-labelledby="chart-{code}-title chart-{code}-desc""#)),
                "{html}"
            );
            assert!(html.contains(&format!("Paid ({code})")), "a labelled y axis");
        }
        assert!(html.contains("Month created"), "a labelled x axis");
        assert!(html.contains(r#"id="chart-KES-2025-02""#), "{html}");
        assert!(html.contains(">1,234.56</text>"), "the exact amount on its bar: {html}");
        assert!(html.contains(">0.05</text>"), "{html}");
        assert!(
            html.contains("<td class=\"amount\">1,234.56 KES</td>"),
            "the figures' table: {html}"
        );
        assert!(html.contains("Feb 2025: 1,234.56 KES (1 payouts)"), "{html}");
        assert!(html.contains(">7.00</text>"), "{html}");
        assert!(
            !html.contains(r#"id="chart-USD-2025-02""#),
            "no label on a month with nothing paid: {html}"
        );
        assert!(
            html.contains("Feb 2025: 0.00 USD (0 payouts)"),
            "said in the description: {html}"
        );
        // The tallest bar of KES: 1,234.56 of a 2,000.00 axis.
        assert!(html.contains(r#"height="123""#), "{html}");
        assert!(html.contains(">2,000.00</text>"), "the axis's top: {html}");
        assert!(!html.contains("<script"), "no script");
    }

    #[test]
    fn nothing_paid_says_so() {
        let html = paid_per_month(&[], 12).into_string();
        assert!(html.contains(r#"id="chart-empty""#), "{html}");
        assert!(!html.contains("<svg"), "{html}");
    }
}
