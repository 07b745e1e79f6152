//! `agentgate dynamodb …`: create the table the DynamoDB store needs, and
//! print the table block of `template.yaml`. Compiled only with the `aws`
//! feature.

use crate::adapters::dynamodb::{self, table, CreateOptions};
use crate::settings::{Overrides, Settings};

#[derive(Debug, clap::Subcommand)]
pub enum DynamodbCommand {
    /// Create the store's table (key schema, indexes, TTL, on-demand
    /// billing, point-in-time recovery), the same table the SAM template
    /// creates. For a local stand-in or a stack managed by hand; a SAM
    /// deployment creates its own.
    CreateTable {
        /// Table name [default: setting `dynamodb.table`].
        #[arg(long)]
        table: Option<String>,
        /// Endpoint of a local stand-in such as moto_server [default:
        /// setting `dynamodb.endpoint_url`].
        #[arg(long)]
        endpoint_url: Option<String>,
        /// AWS region [default: setting `dynamodb.region`, then AWS_REGION].
        #[arg(long)]
        region: Option<String>,
        /// Skip point-in-time recovery (emulators and throwaway tables).
        #[arg(long)]
        no_point_in_time_recovery: bool,
    },
    /// Print the table's `Properties` block exactly as `template.yaml`
    /// must contain it.
    TemplateProperties,
}

pub async fn run(config: Option<&std::path::Path>, cmd: DynamodbCommand) -> anyhow::Result<()> {
    match cmd {
        DynamodbCommand::CreateTable { table, endpoint_url, region, no_point_in_time_recovery } => {
            let settings = Settings::load(config, &Overrides::default())?;
            let mut target = settings.dynamodb;
            target.table = table.unwrap_or(target.table);
            target.endpoint_url = endpoint_url.or(target.endpoint_url);
            target.region = region.or(target.region);
            let client = dynamodb::client(&target).await?;
            let options = CreateOptions {
                point_in_time_recovery: !no_point_in_time_recovery,
                ..CreateOptions::default()
            };
            dynamodb::create_table(&client, &target.table, options).await?;
            println!("created DynamoDB table {}", target.table);
            Ok(())
        }
        DynamodbCommand::TemplateProperties => {
            print!("{}", table::template_properties());
            Ok(())
        }
    }
}
