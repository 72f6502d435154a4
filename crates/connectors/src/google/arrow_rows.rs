//! Apache Arrow IPC messages for the Storage Write API's `arrow_rows` (`bigquery_streaming_v2`
//! with `row_format: arrow`): the schema as an IPC stream of its own, sent once per stream, and
//! each request's rows as one IPC record batch message without the schema.

use arrow_array::RecordBatch;
use arrow_ipc::writer::StreamWriter;
use arrow_schema::{ArrowError, Schema};
use bizon_core::{Error, Result};
use prost::bytes::Bytes;

fn ipc(e: ArrowError) -> Error {
    Error::internal(format!("encoding Arrow IPC: {e}"))
}

/// The IPC stream of `schema` alone (no end-of-stream marker: the rows' messages follow it).
pub fn schema_message(schema: &Schema) -> Result<Bytes> {
    let w = StreamWriter::try_new(Vec::new(), schema).map_err(ipc)?;
    Ok(Bytes::copy_from_slice(w.get_ref()))
}

/// `batch` as one IPC record batch message.
pub fn batch_message(batch: &RecordBatch) -> Result<Bytes> {
    let mut w = StreamWriter::try_new(Vec::new(), &batch.schema()).map_err(ipc)?;
    let schema_len = w.get_ref().len();
    w.write(batch).map_err(ipc)?;
    Ok(Bytes::copy_from_slice(&w.get_ref()[schema_len..]))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_array::{Array, Int64Array, StringArray};
    use arrow_ipc::reader::StreamReader;
    use arrow_schema::{DataType, Field};

    use super::*;

    #[test]
    fn schema_and_batch_messages_read_back_as_one_stream() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Utf8, false),
            Field::new("n", DataType::Int64, true),
        ]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![Arc::new(StringArray::from(vec!["a", "b"])), Arc::new(Int64Array::from(vec![Some(1), None]))],
        )
        .unwrap();
        // What a reader of the API does: the schema's stream, then the batch's message.
        let mut stream = schema_message(&schema).unwrap().to_vec();
        stream.extend_from_slice(&batch_message(&batch).unwrap());
        let read: Vec<RecordBatch> = StreamReader::try_new(&stream[..], None).unwrap().map(|b| b.unwrap()).collect();
        assert_eq!(read.len(), 1);
        assert_eq!(read[0], batch);
        assert!(read[0].column(1).is_null(1));
    }
}
