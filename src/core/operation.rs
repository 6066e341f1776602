/// The catalog of API actions, as `storage.operation()` reports them inside a transaction. Every
/// front maps its calls onto these names, so a policy written once holds on every protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    Upload,
    Overwrite,
    UpdateMetadata,
    Move,
    Copy,
    Delete,
    Download,
    Info,
    List,
    Sign,
    SignUpload,
    Multipart,
    BucketCreate,
    BucketUpdate,
    BucketDelete,
    BucketEmpty,
    BucketGet,
    BucketList,
}

impl Operation {
    /// Every operation, for parsing and help texts.
    pub const ALL: [Operation; 18] = [
        Operation::Upload,
        Operation::Overwrite,
        Operation::UpdateMetadata,
        Operation::Move,
        Operation::Copy,
        Operation::Delete,
        Operation::Download,
        Operation::Info,
        Operation::List,
        Operation::Sign,
        Operation::SignUpload,
        Operation::Multipart,
        Operation::BucketCreate,
        Operation::BucketUpdate,
        Operation::BucketDelete,
        Operation::BucketEmpty,
        Operation::BucketGet,
        Operation::BucketList,
    ];

    /// The operation named `name`, with or without the `storage.` prefix.
    pub fn parse(name: &str) -> Option<Self> {
        let name = name.strip_prefix("storage.").unwrap_or(name);
        Self::ALL
            .into_iter()
            .find(|op| op.as_str().strip_prefix("storage.") == Some(name))
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Upload => "storage.upload",
            Operation::Overwrite => "storage.overwrite",
            Operation::UpdateMetadata => "storage.update_metadata",
            Operation::Move => "storage.move",
            Operation::Copy => "storage.copy",
            Operation::Delete => "storage.delete",
            Operation::Download => "storage.download",
            Operation::Info => "storage.info",
            Operation::List => "storage.list",
            Operation::Sign => "storage.sign",
            Operation::SignUpload => "storage.sign_upload",
            Operation::Multipart => "storage.multipart",
            Operation::BucketCreate => "storage.bucket.create",
            Operation::BucketUpdate => "storage.bucket.update",
            Operation::BucketDelete => "storage.bucket.delete",
            Operation::BucketEmpty => "storage.bucket.empty",
            Operation::BucketGet => "storage.bucket.get",
            Operation::BucketList => "storage.bucket.list",
        }
    }
}

impl std::fmt::Display for Operation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_with_or_without_the_prefix() {
        for op in Operation::ALL {
            assert_eq!(Operation::parse(op.as_str()), Some(op));
            let bare = op.as_str().strip_prefix("storage.").unwrap();
            assert_eq!(Operation::parse(bare), Some(op));
        }
        assert_eq!(Operation::parse("storage.nothing"), None);
        assert_eq!(Operation::parse("storage."), None);
        assert_eq!(Operation::parse(""), None);
    }
}
