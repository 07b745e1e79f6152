//! `agentgate catalog …`: operator commands for the embedded catalog.
//!
//! This module only reads arguments, opens the database and prints; the
//! file formats live in `adapters::catalog_import` and the storage in
//! `adapters::sqlite::catalog`.

use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::adapters::catalog_import::{self, CatalogFormat};
use crate::adapters::sqlite::catalog::{ImportReport, SqliteCatalog};
use crate::adapters::sqlite::Db;
use crate::bootstrap::DB_FILE;

#[derive(Debug, Clone, clap::Subcommand)]
pub enum CatalogCommand {
    /// Imports products from a JSON or CSV file into the embedded catalog,
    /// adding new products and updating known ones (matched by id).
    Import {
        /// The catalog file (see profiles/README.md for both formats).
        file: PathBuf,
        /// The file's format; by default taken from its extension.
        #[arg(long, value_enum)]
        format: Option<FormatArg>,
        /// Where the gateway keeps its database.
        #[arg(long, env = "AGENTGATE_DATA_DIR", default_value = "./data")]
        data_dir: PathBuf,
    },
}

/// `--format` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum FormatArg {
    Json,
    Csv,
}

impl From<FormatArg> for CatalogFormat {
    fn from(f: FormatArg) -> Self {
        match f {
            FormatArg::Json => CatalogFormat::Json,
            FormatArg::Csv => CatalogFormat::Csv,
        }
    }
}

pub async fn run(cmd: CatalogCommand) -> anyhow::Result<()> {
    match cmd {
        CatalogCommand::Import { file, format, data_dir } => {
            let report = import_file(&file, format.map(Into::into), &data_dir).await?;
            println!(
                "imported {} products ({} variants, {} categories, {} sold out) from {}; the catalog now holds {} products",
                report.products,
                report.variants,
                report.categories,
                report.sold_out,
                file.display(),
                report.catalog_products
            );
            Ok(())
        }
    }
}

/// Reads `file` and imports it into the database in `data_dir`.
pub async fn import_file(
    file: &Path,
    format: Option<CatalogFormat>,
    data_dir: &Path,
) -> anyhow::Result<ImportReport> {
    let format = format.or_else(|| CatalogFormat::from_path(file)).with_context(|| {
        format!(
            "cannot tell the format of {} from its extension; pass --format json or --format csv",
            file.display()
        )
    })?;
    let bytes =
        tokio::fs::read(file).await.with_context(|| format!("cannot read {}", file.display()))?;
    let products = catalog_import::parse(&bytes, format)
        .with_context(|| format!("{} is not a valid catalog", file.display()))?;
    // The full migration list, so a catalog imported before the first
    // `serve` lands in a database the server opens unchanged.
    let migrations = crate::adapters::sqlite::migrations();
    let path = data_dir.join(DB_FILE);
    let db = tokio::task::spawn_blocking(move || Db::open(&path, &migrations))
        .await
        .context("opening the database panicked")??;
    let report = SqliteCatalog::new(db).import(products).await?;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(subcommand)]
        cmd: CatalogCommand,
    }

    #[test]
    fn parses_import_arguments() {
        let cli = Cli::try_parse_from([
            "x",
            "import",
            "c.csv",
            "--format",
            "csv",
            "--data-dir",
            "/tmp/d",
        ])
        .unwrap();
        let CatalogCommand::Import { file, format, data_dir } = cli.cmd;
        assert_eq!(file, PathBuf::from("c.csv"));
        assert_eq!(format, Some(FormatArg::Csv));
        assert_eq!(data_dir, PathBuf::from("/tmp/d"));
        assert!(Cli::try_parse_from(["x", "import", "c.csv", "--format", "xml"]).is_err());
    }

    #[tokio::test]
    async fn imports_both_profiles_files_into_one_database() {
        let dir = tempfile::tempdir().unwrap();
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("profiles");
        let json = import_file(&root.join("catalog.json"), None, dir.path()).await.unwrap();
        assert_eq!((json.products, json.catalog_products), (77, 77));
        let csv = import_file(&root.join("catalog-sample.csv"), None, dir.path()).await.unwrap();
        assert_eq!(csv.catalog_products, 77 + csv.products as u64);
        assert!(dir.path().join(DB_FILE).exists());
        // Run through the command as the binary would, for the report path.
        let cmd = CatalogCommand::Import {
            file: root.join("catalog-sample.csv"),
            format: Some(FormatArg::Csv),
            data_dir: dir.path().to_owned(),
        };
        run(cmd).await.unwrap();
    }

    #[tokio::test]
    async fn refuses_unknown_extensions_and_bad_files() {
        let dir = tempfile::tempdir().unwrap();
        let txt = dir.path().join("catalog.txt");
        std::fs::write(&txt, "{}").unwrap();
        let err = import_file(&txt, None, dir.path()).await.unwrap_err();
        assert!(err.to_string().contains("--format"), "{err}");
        let err = import_file(&txt, Some(CatalogFormat::Json), dir.path()).await.unwrap_err();
        assert!(format!("{err:#}").contains("products"), "{err:#}");
        let missing = dir.path().join("missing.json");
        assert!(import_file(&missing, None, dir.path()).await.is_err());
    }
}
