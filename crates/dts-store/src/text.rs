//! Reading text columns through `sqlx::Any`: the MySQL driver reports
//! `TEXT`/`LONGTEXT` columns as `BLOB`, so text is read as a string where
//! the backend says text, and as UTF-8 bytes where it says blob.

use sqlx::any::AnyRow;
use sqlx::Row;

pub(crate) fn text(row: &AnyRow, column: &str) -> Result<String, sqlx::Error> {
    opt_text(row, column)?
        .ok_or_else(|| sqlx::Error::ColumnDecode { index: column.to_owned(), source: "unexpected NULL".into() })
}

pub(crate) fn opt_text(row: &AnyRow, column: &str) -> Result<Option<String>, sqlx::Error> {
    match row.try_get::<Option<String>, _>(column) {
        Ok(v) => Ok(v),
        Err(sqlx::Error::ColumnDecode { .. }) => match row.try_get::<Option<Vec<u8>>, _>(column)? {
            None => Ok(None),
            Some(bytes) => String::from_utf8(bytes)
                .map(Some)
                .map_err(|e| sqlx::Error::ColumnDecode { index: column.to_owned(), source: Box::new(e) }),
        },
        Err(e) => Err(e),
    }
}
