//! A [`Did`] is stored as the text of a column: the store writes only DIDs made by
//! the parser, so what it reads back is one.

use crate::identity::Did;
use sqlx::encode::IsNull;
use sqlx::error::BoxDynError;
use sqlx::sqlite::{SqliteArgumentValue, SqliteTypeInfo, SqliteValueRef};
use sqlx::{Decode, Encode, Sqlite, Type};

impl Type<Sqlite> for Did {
    fn type_info() -> SqliteTypeInfo {
        <String as Type<Sqlite>>::type_info()
    }

    fn compatible(ty: &SqliteTypeInfo) -> bool {
        <String as Type<Sqlite>>::compatible(ty)
    }
}

impl<'q> Encode<'q, Sqlite> for Did {
    fn encode_by_ref(&self, buf: &mut Vec<SqliteArgumentValue<'q>>) -> Result<IsNull, BoxDynError> {
        <String as Encode<'q, Sqlite>>::encode(self.as_str().to_owned(), buf)
    }
}

impl<'r> Decode<'r, Sqlite> for Did {
    fn decode(value: SqliteValueRef<'r>) -> Result<Self, BoxDynError> {
        Ok(Did::from_stored(<&str as Decode<'r, Sqlite>>::decode(value)?))
    }
}

impl Type<sqlx::Postgres> for Did {
    fn type_info() -> sqlx::postgres::PgTypeInfo {
        <String as Type<sqlx::Postgres>>::type_info()
    }

    fn compatible(ty: &sqlx::postgres::PgTypeInfo) -> bool {
        <String as Type<sqlx::Postgres>>::compatible(ty)
    }
}

impl<'q> Encode<'q, sqlx::Postgres> for Did {
    fn encode_by_ref(&self, buf: &mut sqlx::postgres::PgArgumentBuffer) -> Result<IsNull, BoxDynError> {
        <&str as Encode<'q, sqlx::Postgres>>::encode(self.as_str(), buf)
    }
}

impl<'r> Decode<'r, sqlx::Postgres> for Did {
    fn decode(value: sqlx::postgres::PgValueRef<'r>) -> Result<Self, BoxDynError> {
        Ok(Did::from_stored(<&str as Decode<'r, sqlx::Postgres>>::decode(value)?))
    }
}
