use anyhow::Result;
use clap::Args;
#[derive(Args)]
pub struct Options {}
pub fn run(_o: Options) -> Result<()> { anyhow::bail!("todo") }
