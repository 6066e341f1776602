//! Object name rules. Names become path tokens, policy inputs and S3 keys; refusing hostile
//! ones at the door keeps every layer below simple.

use super::Error;

/// The longest name accepted, in UTF-8 bytes (S3's limit).
pub const MAX_NAME_BYTES: usize = 1024;

/// Checks an object name, naming the broken rule in the error.
pub fn validate_object_name(name: &str) -> Result<(), Error> {
    let rule = |text: &str| Err(Error::InvalidKey(text.to_string()));
    if name.is_empty() {
        return rule("the name must not be empty");
    }
    if name.len() > MAX_NAME_BYTES {
        return rule(&format!(
            "the name is {} bytes long; the limit is {MAX_NAME_BYTES} bytes",
            name.len()
        ));
    }
    if let Some(c) = name.chars().find(|c| c.is_control()) {
        return rule(&format!(
            "the name must not contain control characters (found U+{:04X})",
            c as u32
        ));
    }
    if name.starts_with('/') {
        return rule("the name must not start with '/'");
    }
    if name.ends_with('/') {
        return rule("the name must not end with '/'");
    }
    if name.contains("//") {
        return rule("the name must not contain empty segments ('//')");
    }
    if name
        .split('/')
        .any(|segment| segment == "." || segment == "..")
    {
        return rule("the name must not contain '.' or '..' segments");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(name: &str) -> String {
        match validate_object_name(name) {
            Err(Error::InvalidKey(rule)) => rule,
            other => panic!("{name:?} was not refused: {other:?}"),
        }
    }

    #[test]
    fn accepts_ordinary_and_unicode_names() {
        for name in [
            "a.png",
            "a/b/c.png",
            "фото/снимок.JPG",
            "emoji 😀.txt",
            "a..b/c",
            ".hidden",
        ] {
            validate_object_name(name).unwrap();
        }
        validate_object_name(&"x".repeat(MAX_NAME_BYTES)).unwrap();
    }

    #[test]
    fn names_the_rule_it_breaks() {
        assert!(refused("").contains("empty"));
        assert!(refused("/a").contains("start with '/'"));
        assert!(refused("a/").contains("end with '/'"));
        assert!(refused("a//b").contains("'//'"));
        assert!(refused("a/../b").contains("'..'"));
        assert!(refused("..").contains("'..'"));
        assert!(refused("./a").contains("'.'"));
        assert!(refused("a\0b").contains("U+0000"));
        assert!(refused("a\nb").contains("U+000A"));
        assert!(refused("a\u{7f}").contains("U+007F"));
        assert!(refused(&"é".repeat(513)).contains("1024"));
    }
}
