//! Writes the OpenAPI documents the API server serves to a directory, for checks against real
//! kubectl with a throwaway server: `cargo run -p keelson-api --example dump_openapi -- DIR`.

use std::path::PathBuf;

use keelson_api::openapi::{v2_document_json, v3_document_json, v3_group_versions, v3_root};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = PathBuf::from(std::env::args().nth(1).ok_or("usage: dump_openapi DIR")?);
    std::fs::create_dir_all(dir.join("openapi/v3"))?;
    std::fs::write(
        dir.join("openapi/v3/index.json"),
        serde_json::to_vec(&v3_root())?,
    )?;
    for path in v3_group_versions() {
        let file = dir.join("openapi/v3").join(format!("{path}.json"));
        if let Some(parent) = file.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(file, v3_document_json(path).ok_or("document missing")?)?;
    }
    std::fs::write(dir.join("openapi/v2.json"), v2_document_json())?;
    println!("wrote {}", dir.display());
    Ok(())
}
