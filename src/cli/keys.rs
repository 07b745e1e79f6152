//! `agentgate keys …`: make and inspect ES256 key files.
//!
//! Private keys go to files created with mode 0600 that are never
//! overwritten; only `kid`s and public JWKs are printed.

use std::path::PathBuf;

use anyhow::Context as _;
use rand_core::OsRng;
use serde_json::json;

use crate::adapters::keyfile::{read_secret_file, write_secret_file};
use crate::ap2::keys::{PrivateKey, PublicKey, PublicKeySet};
use secrecy::ExposeSecret as _;

#[derive(Debug, clap::Subcommand)]
pub enum KeysCommand {
    /// Generate a P-256 key pair for ES256. Prints the kid (the RFC 7638
    /// thumbprint) and the public JWK; the private key goes to a 0600 file.
    Generate {
        /// Private key file to create (refuses to overwrite).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Write the private key as a JWK instead of PKCS#8 PEM.
        #[arg(long)]
        jwk: bool,
        /// Also write the public JWKS (`{"keys":[…]}`) to this file.
        #[arg(long)]
        jwks_out: Option<PathBuf>,
    },
    /// Print the public JWKS of one or more key files (private or public).
    Jwks {
        #[arg(long = "key", required = true)]
        keys: Vec<PathBuf>,
    },
}

pub fn run(cmd: KeysCommand) -> anyhow::Result<()> {
    match cmd {
        KeysCommand::Generate { out, jwk, jwks_out } => {
            let out = out.unwrap_or_else(|| {
                PathBuf::from(if jwk { "agentgate-key.jwk" } else { "agentgate-key.pem" })
            });
            let key = PrivateKey::generate(&mut OsRng);
            let secret = if jwk { key.export_jwk() } else { key.export_pkcs8_pem()? };
            write_secret_file(&out, &secret)
                .with_context(|| format!("cannot create {}", out.display()))?;
            let public = key.public().to_jwk();
            if let Some(path) = jwks_out {
                std::fs::write(&path, format!("{:#}\n", json!({ "keys": [public.clone()] })))
                    .with_context(|| format!("cannot write {}", path.display()))?;
            }
            println!(
                "{:#}",
                json!({ "kid": key.kid(), "private_key_file": out.display().to_string(), "jwk": public })
            );
            Ok(())
        }
        KeysCommand::Jwks { keys } => {
            let mut set = PublicKeySet::new();
            for path in keys {
                let text = read_secret_file(&path)?;
                let key = PublicKey::from_text(text.expose_secret())
                    .with_context(|| format!("{} holds no P-256 key", path.display()))?;
                set.insert(key, None)?;
            }
            println!("{:#}", set.to_jwks(time::OffsetDateTime::now_utc()));
            Ok(())
        }
    }
}
