//! Compiles the `.proto` files with `protox` (pure Rust, no system `protoc`) and
//! generates prost messages plus tonic clients and servers. The compiled descriptors are
//! also written to `file_descriptor_set.bin` (see `proto::FILE_DESCRIPTOR_SET`), for the
//! JSON gateway's proto3 JSON mapping.

use prost::Message as _;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "proto/mvccpb.proto",
        "proto/authpb.proto",
        "proto/rpc.proto",
        "proto/raftkvpb.proto",
        "proto/raftkvpeer.proto",
    ];
    for file in files {
        println!("cargo:rerun-if-changed={file}");
    }
    let descriptors = protox::compile(files, ["proto"])?;
    let mut without_comments = descriptors.clone();
    for file in &mut without_comments.file {
        file.source_code_info = None;
    }
    let out_dir = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(out_dir.join("file_descriptor_set.bin"), without_comments.encode_to_vec())?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .generate_default_stubs(true)
        .bytes(".raftkvpeer")
        // Keys and values are shared, not copied, between the request, the log entry
        // it was decoded from, the store's history and watch events.
        .bytes(".mvccpb.KeyValue")
        .bytes(".etcdserverpb.PutRequest")
        .compile_fds(descriptors)?;
    Ok(())
}
