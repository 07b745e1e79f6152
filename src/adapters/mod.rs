pub mod keyfile;
