"""The metadata database: schema (`tables`), engines and transactions (`engine`) and schema
migrations (`migrate`). The registry on top of it is `cairn.service.sql`."""
