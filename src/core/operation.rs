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
