//! See main.rs.

use crate::common::Report;

pub async fn run(_report: &mut Report) {
    todo!("calc")
}
