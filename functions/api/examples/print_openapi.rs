//! Prints `/openapi.json` as the api function serves it, without a server: the input of
//! `web/herald-api.d.ts` (scripts/test.d/40-contract says how to regenerate it).
fn main() {
    println!("{}", api::openapi::document());
}
