//! The page's files, embedded at build time so the binary serves them with no network
//! access and no build step beyond `cargo build`.

/// The files under `assets/`, by name, with their content type.
const FILES: [(&str, &str, &str); 4] = [
    (
        "index.html",
        include_str!("../assets/index.html"),
        "text/html; charset=utf-8",
    ),
    (
        "app.js",
        include_str!("../assets/app.js"),
        "text/javascript; charset=utf-8",
    ),
    (
        "style.css",
        include_str!("../assets/style.css"),
        "text/css; charset=utf-8",
    ),
    (
        "favicon.svg",
        include_str!("../assets/favicon.svg"),
        "image/svg+xml",
    ),
];

/// The body and content type of the file `name`, if there is one.
pub fn get(name: &str) -> Option<(&'static str, &'static str)> {
    FILES
        .iter()
        .find(|(file, _, _)| *file == name)
        .map(|(_, body, content_type)| (*body, *content_type))
}
