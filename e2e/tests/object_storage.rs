//! The S3 server of `e2e/infra/minio.sh`, through `object_store` as the runtime
//! uses it: put, list, get and delete, and a refusal of the wrong secret key.

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use strom_e2e::S3Server;

fn server() -> Option<S3Server> {
    S3Server::from_env().expect("the S3 server")
}

fn store(server: &S3Server, secret_access_key: &str) -> AmazonS3 {
    AmazonS3Builder::new()
        .with_endpoint(&server.endpoint)
        .with_allow_http(true)
        .with_region(&server.region)
        .with_bucket_name(&server.bucket)
        .with_access_key_id(&server.access_key_id)
        .with_secret_access_key(secret_access_key)
        .build()
        .unwrap()
}

async fn list(store: &AmazonS3, prefix: &Path) -> Vec<String> {
    let mut names: Vec<String> = store
        .list(Some(prefix))
        .map_ok(|meta| meta.location.to_string())
        .try_collect()
        .await
        .unwrap();
    names.sort();
    names
}

#[tokio::test]
async fn put_list_get_and_delete_on_the_s3_server() {
    let Some(server) = server() else { return };
    let store = store(&server, &server.secret_access_key);
    let folder = format!("e2e/{}", uuid::Uuid::new_v4().simple());
    let prefix = Path::from(folder.as_str());
    let first = Path::from(format!("{folder}/chk-1/_manifest"));
    let second = Path::from(format!("{folder}/shared/000001.sst"));
    // Larger than one multipart part would be, to cross more than one TCP write.
    let big = Bytes::from(vec![7u8; 3 * 1024 * 1024]);

    store
        .put(&first, PutPayload::from_static(b"{\"epoch\":1}"))
        .await
        .unwrap();
    store.put(&second, big.clone().into()).await.unwrap();

    assert_eq!(
        list(&store, &prefix).await,
        vec![first.to_string(), second.to_string()]
    );
    let got = store.get(&first).await.unwrap().bytes().await.unwrap();
    assert_eq!(&got[..], b"{\"epoch\":1}");
    let got = store.get(&second).await.unwrap().bytes().await.unwrap();
    assert_eq!(got, big);
    let range = store.get_range(&second, 10..20).await.unwrap();
    assert_eq!(&range[..], &[7u8; 10]);

    store.delete(&first).await.unwrap();
    assert_eq!(list(&store, &prefix).await, vec![second.to_string()]);
    assert!(matches!(
        store.get(&first).await,
        Err(object_store::Error::NotFound { .. })
    ));
    store.delete(&second).await.unwrap();
    assert!(list(&store, &prefix).await.is_empty());
}

#[tokio::test]
async fn the_s3_server_refuses_a_wrong_secret_key() {
    let Some(server) = server() else { return };
    let store = store(&server, "not-the-secret-key");
    let error = store
        .put(&Path::from("e2e/refused"), PutPayload::from_static(b"x"))
        .await
        .expect_err("a put signed with the wrong key was accepted");
    let message = error.to_string();
    assert!(
        message.contains("SignatureDoesNotMatch") || message.contains("403"),
        "{message}"
    );
    assert!(!message.contains("not-the-secret-key"), "{message}");
}
