//! CLI transcripts (trycmd): help, a validate error with its labelled span,
//! and each exit code.

#[test]
fn cli_transcripts() {
    trycmd::TestCases::new().case("tests/cmd/*.trycmd").case("tests/cmd/*.toml");
}
