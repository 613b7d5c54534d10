//! The stylesheet and the script, embedded in the binary. Each is served under a name that
//! carries a hash of its content, so a browser may keep it for a year and still never run
//! an old script against a new page.

use std::sync::LazyLock;

use actix_web::{HttpResponse, http::header};

/// One embedded file.
pub struct Asset {
    /// `app-<hash>.css`: the name pages link to.
    pub name: String,
    body: &'static str,
    content_type: &'static str,
}

impl Asset {
    fn new(stem: &str, extension: &str, body: &'static str, content_type: &'static str) -> Self {
        let hash = blake3::hash(body.as_bytes()).to_hex();
        Self { name: format!("{stem}-{}.{extension}", &hash[..12]), body, content_type }
    }

    /// The URL pages use.
    pub fn url(&self) -> String {
        format!("{}/assets/{}", crate::BASE, self.name)
    }
}

pub static STYLE: LazyLock<Asset> =
    LazyLock::new(|| Asset::new("app", "css", include_str!("../assets/app.css"), "text/css; charset=utf-8"));

pub static SCRIPT: LazyLock<Asset> =
    LazyLock::new(|| Asset::new("app", "js", include_str!("../assets/app.js"), "text/javascript; charset=utf-8"));

/// The answer for the asset named `name`, if it is one of the current names.
pub fn response(name: &str) -> Option<HttpResponse> {
    let asset = [&*STYLE, &*SCRIPT].into_iter().find(|asset| asset.name == name)?;
    Some(
        HttpResponse::Ok()
            .insert_header((header::CONTENT_TYPE, asset.content_type))
            .insert_header((header::CACHE_CONTROL, "public, max-age=31536000, immutable"))
            .body(asset.body),
    )
}
