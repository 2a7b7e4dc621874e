//! Our binaries side by side with upstream's: `hubble observe --input-file`, history
//! through the relay and follow latency with 8 replaying agents, agent memory per stored flow (see `perf`).
//!
//! Build our binaries first; it refuses a binary older than the workspace's sources:
//!
//! ```text
//! cargo build --release -p agent -p relay -p hubble-cli
//! HUBBLE_UPSTREAM=/path/to/hubble HUBBLE_RELAY_UPSTREAM=/path/to/hubble-relay \
//!     cargo bench -p tests --bench side_by_side -- [--quick] [--flows N] [--only cli,relay,follow,agent]
//! ```
//!
//! `-- --write-capture FILE [--flows N]` only writes the capture, to profile one command
//! on it by hand.

mod perf;

fn main() -> anyhow::Result<()> {
    let options = perf::Options::from_args(std::env::args().skip(1), tests::bin_dir())?;
    perf::run(&options)
}
