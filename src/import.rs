//! `civic import roster FILE.csv --street … --community …`: streams a roster file's rows to a
//! running civic's ImportRoster, with a progress bar (rows, rows per second, time left), and
//! writes the rows it refused, with their field and reason, to `FILE.errors.csv` beside it.
//!
//! The file is CSV with a header row naming the columns `building`, `address`, `latitude`,
//! `longitude`, `name`, `id_number`, `phone`, `birth_date`, `tags` (separated by `;`) and
//! `consent_note`, in any order; only `address`, `latitude`, `longitude` and `name` are
//! required. `services/grid/seed/roster-sample.csv` is an example.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use civic_proto::grid::roster_service_client::RosterServiceClient;
use civic_proto::grid::{ImportRosterRequest, ImportRosterResponse, Point, RosterRow};
use indicatif::{ProgressBar, ProgressStyle};

/// Rows per message of the stream.
const BATCH: usize = 500;

/// `civic import` options.
#[derive(Debug, clap::Args)]
pub struct ImportArgs {
    #[command(subcommand)]
    what: What,
}

#[derive(Debug, clap::Subcommand)]
enum What {
    /// Imports households and residents from a CSV file into a street's community.
    Roster(RosterArgs),
}

#[derive(Debug, clap::Args)]
struct RosterArgs {
    /// The CSV file.
    file: PathBuf,
    /// The street, such as `zhongjie`.
    #[arg(long)]
    street: String,
    /// The community the households belong to, such as `dongyuan`.
    #[arg(long)]
    community: String,
    /// Import the good rows even when some are bad.
    #[arg(long)]
    skip_bad_rows: bool,
    /// The civic to import into: its gRPC address.
    #[arg(long, default_value = "http://127.0.0.1:50051")]
    grpc_addr: String,
    /// A bearer token of the street's admin or the community's cadre (or `CIVIC_TOKEN`).
    #[arg(long, env = "CIVIC_TOKEN", hide_env_values = true)]
    token: String,
}

/// Runs `civic import`.
pub async fn main(args: ImportArgs) -> anyhow::Result<()> {
    match args.what {
        What::Roster(args) => roster(args).await,
    }
}

/// The column positions of a header row.
struct Columns {
    at: Vec<(String, usize)>,
}

impl Columns {
    fn read(header: &csv::StringRecord) -> anyhow::Result<Self> {
        let at: Vec<(String, usize)> = header
            .iter()
            .enumerate()
            .map(|(i, name)| (name.trim().trim_start_matches('\u{feff}').to_owned(), i))
            .collect();
        for required in ["address", "latitude", "longitude", "name"] {
            if !at.iter().any(|(n, _)| n == required) {
                bail!("the header names no `{required}` column");
            }
        }
        Ok(Self { at })
    }

    fn get<'r>(&self, record: &'r csv::StringRecord, name: &str) -> &'r str {
        self.at.iter().find(|(n, _)| n == name).and_then(|(_, i)| record.get(*i)).unwrap_or("").trim()
    }

    /// A row as the service takes it; a coordinate that is not a number is sent as no location,
    /// which the service reports against the row.
    fn row(&self, record: &csv::StringRecord, row_number: i64) -> RosterRow {
        let number = |name: &str| self.get(record, name).parse::<f64>().ok();
        let location = match (number("latitude"), number("longitude")) {
            (Some(latitude), Some(longitude)) => Some(Point { latitude, longitude }),
            _ => None,
        };
        RosterRow {
            row_number,
            building: self.get(record, "building").to_owned(),
            address: self.get(record, "address").to_owned(),
            location,
            display_name: self.get(record, "name").to_owned(),
            id_number: self.get(record, "id_number").to_owned(),
            phone: self.get(record, "phone").to_owned(),
            birth_date: self.get(record, "birth_date").to_owned(),
            tags: self
                .get(record, "tags")
                .split([';', '；'])
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .map(str::to_owned)
                .collect(),
            consent_note: self.get(record, "consent_note").to_owned(),
        }
    }
}

async fn roster(args: RosterArgs) -> anyhow::Result<()> {
    let size = std::fs::metadata(&args.file).with_context(|| format!("reading {}", args.file.display()))?.len();
    let bar = ProgressBar::new(size);
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] {wide_bar} {percent:>3}% {msg} (ETA {eta})")
            .context("the progress bar's template")?,
    );
    bar.enable_steady_tick(Duration::from_millis(200));
    let (sender, receiver) = tokio::sync::mpsc::channel::<ImportRosterRequest>(4);
    let header = ImportRosterRequest {
        parent: format!("streets/{}", args.street),
        community: format!("streets/{}/communities/{}", args.street, args.community),
        skip_bad_rows: args.skip_bad_rows,
        rows: Vec::new(),
    };
    let file = args.file.clone();
    let reading_bar = bar.clone();
    let template = header.clone();
    // Reading and parsing the file is blocking work: a thread of its own, feeding the stream.
    let reader = tokio::task::spawn_blocking(move || -> anyhow::Result<u64> {
        let mut csv = csv::ReaderBuilder::new().flexible(true).from_path(&file)?;
        let columns = Columns::read(csv.headers()?)?;
        let started = std::time::Instant::now();
        let mut rows = Vec::with_capacity(BATCH);
        let mut count = 0_u64;
        let mut record = csv::StringRecord::new();
        while csv.read_record(&mut record)? {
            count += 1;
            // The header is row 1.
            rows.push(columns.row(&record, count as i64 + 1));
            if rows.len() == BATCH {
                let message = ImportRosterRequest { rows: std::mem::take(&mut rows), ..template.clone() };
                if sender.blocking_send(message).is_err() {
                    bail!("the server stopped taking rows");
                }
                reading_bar.set_position(csv.position().byte());
                let rate = count as f64 / started.elapsed().as_secs_f64().max(1e-3);
                reading_bar.set_message(format!("{count} rows, {rate:.0} rows/s"));
            }
        }
        let last = ImportRosterRequest { rows, ..template };
        if sender.blocking_send(last).is_err() {
            bail!("the server stopped taking rows");
        }
        reading_bar.set_position(csv.position().byte());
        reading_bar.set_message(format!("{count} rows sent; the server is checking and writing them"));
        Ok(count)
    });
    let channel = tonic::transport::Endpoint::from_shared(args.grpc_addr.clone())
        .with_context(|| format!("--grpc-addr {}", args.grpc_addr))?
        .connect()
        .await
        .with_context(|| format!("connecting to {}", args.grpc_addr))?;
    let mut client = RosterServiceClient::new(channel).max_decoding_message_size(16 * 1024 * 1024);
    let mut request = tonic::Request::new(tokio_stream::wrappers::ReceiverStream::new(receiver));
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {}", args.token).parse().context("the token is not a header value")?);
    let answer = client.import_roster(request).await;
    let read = reader.await.context("the reading thread")?;
    bar.finish_and_clear();
    let answer =
        answer.map_err(|s| anyhow::anyhow!("the import failed: {} ({:?})", s.message(), s.code()))?.into_inner();
    read?;
    report(&args.file, &answer)?;
    Ok(())
}

/// Prints what happened and writes the refused rows beside the file.
fn report(file: &Path, answer: &ImportRosterResponse) -> anyhow::Result<()> {
    if answer.bad_rows > 0 {
        let path = file.with_extension("errors.csv");
        let mut out = csv::Writer::from_path(&path).with_context(|| format!("writing {}", path.display()))?;
        out.write_record(["row", "field", "reason"])?;
        for e in &answer.errors {
            out.write_record([e.row_number.to_string(), e.field.clone(), e.reason.clone()])?;
        }
        if answer.bad_rows > answer.errors.len() as i64 {
            let more = answer.bad_rows - answer.errors.len() as i64;
            out.write_record(["".to_owned(), "".to_owned(), format!("and {more} more bad rows")])?;
        }
        out.flush()?;
        println!("{} of {} rows are bad: see {}", answer.bad_rows, answer.rows, path.display());
    }
    if answer.imported {
        println!(
            "imported {} rows: {} households and {} residents added, {} residents already on the roster",
            answer.rows - answer.bad_rows,
            answer.households_created,
            answer.residents_created,
            answer.unchanged
        );
        Ok(())
    } else {
        bail!("nothing was imported; correct the rows, or import the others with --skip-bad-rows")
    }
}
