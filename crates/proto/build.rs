//! Compiles the `.proto` files with `protox` (pure Rust, no system `protoc`) and
//! generates prost messages plus tonic clients and servers.

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
