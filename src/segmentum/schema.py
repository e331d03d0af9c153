"""The canonical tables segmentum stores, their columns, and the names users give them.

This module is the one source of truth for the data model: ingestion maps files onto it, the
warehouse creates tables from it, and ``docs/data-model.md`` is checked against it by a test.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import ibis
import ibis.expr.datatypes as dt

# How a text value is parsed and checked on the way in.
KIND_DTYPES: dict[str, str] = {
    "id": "string",
    "text": "string",
    "category": "string",
    "email": "string",
    "phone": "string",
    "gender": "string",
    "tags": "string",
    "number": "float64",
    "integer": "int64",
    "date": "date",
    "timestamp": "timestamp",
    "bool": "boolean",
}


@dataclass(frozen=True)
class Column:
    """One canonical column: its kind, meaning, and the names it goes by in exports."""

    name: str
    kind: str
    doc: str
    synonyms: tuple[str, ...] = ()

    @property
    def dtype(self) -> dt.DataType:
        return dt.dtype(KIND_DTYPES[self.kind])


@dataclass(frozen=True)
class Table:
    """A canonical table: columns, the key that makes a row unique, and what must be present."""

    name: str
    doc: str
    columns: tuple[Column, ...]
    key: tuple[str, ...] = ()
    # Each inner tuple is "one of these": at least one column of every group must be mapped.
    required: tuple[tuple[str, ...], ...] = ()
    ingestible: bool = True
    lineage: bool = True
    extra: tuple[Column, ...] = field(default=())

    def column(self, name: str) -> Column:
        for c in self.all_columns:
            if c.name == name:
                return c
        raise KeyError(name)

    @property
    def all_columns(self) -> tuple[Column, ...]:
        cols = self.columns + self.extra
        if self.lineage:
            cols = cols + LINEAGE
        return cols

    @property
    def ibis_schema(self) -> ibis.Schema:
        return ibis.schema({c.name: c.dtype for c in self.all_columns})


LINEAGE = (
    Column("batch_id", "id", "The ingest batch that loaded the row (see ingest_batches)."),
    Column("source_row", "integer", "Data row number in the source file (1 = first data row)."),
)

_CONSENT = tuple(
    Column(
        f"consent_{ch}",
        "bool",
        f"The customer agreed to be contacted by {label}.",
        (f"consent_{ch}", f"consentimiento_{ch}", f"optin_{ch}", f"acepta_{ch}", *extra_syn),
    )
    for ch, label, extra_syn in (
        ("email", "email", ("newsletter", "acepta_email", "permiso_email", "email_optin")),
        ("sms", "SMS", ("permiso_sms", "sms_optin")),
        ("push", "push notification", ("permiso_push", "push_optin")),
        ("inapp", "in-app message", ("consent_in_app", "permiso_inapp")),
        ("web", "web message", ("permiso_web", "web_optin")),
    )
)

_PERSON = (
    Column("first_name", "text", "Given name.", ("first_name", "firstname", "nombre")),
    Column(
        "last_name",
        "text",
        "Family name.",
        ("last_name", "lastname", "surname", "apellidos", "apellido"),
    ),
    Column(
        "email",
        "email",
        "Email address (personal data).",
        ("email", "e_mail", "mail", "correo", "correo_electronico"),
    ),
    Column(
        "phone",
        "phone",
        "Phone number (personal data).",
        ("phone", "telephone", "mobile", "telefono", "movil", "celular"),
    ),
    Column(
        "birth_date",
        "date",
        "Date of birth.",
        ("birth_date", "birthdate", "date_of_birth", "dob", "fecha_nacimiento", "nacimiento"),
    ),
    Column("age", "integer", "Age in years, when no birth date is known.", ("age", "edad")),
    Column(
        "gender",
        "gender",
        "female, male, other (normalised from F/M/H/mujer/hombre...).",
        ("gender", "sex", "sexo", "genero"),
    ),
    Column("country", "text", "Country.", ("country", "pais")),
    Column(
        "region",
        "text",
        "Region (e.g. Andalucía, autonomous community).",
        ("region", "comunidad", "comunidad_autonoma", "ccaa"),
    ),
    Column(
        "state",
        "text",
        "State or province.",
        ("state", "province", "provincia", "estado", "departamento"),
    ),
    Column(
        "city", "text", "City.", ("city", "town", "ciudad", "localidad", "municipio", "poblacion")
    ),
    Column(
        "postal_code",
        "id",
        "Postal code.",
        ("postal_code", "postcode", "zip", "zip_code", "codigo_postal", "cp"),
    ),
    Column(
        "neighbourhood",
        "text",
        "Neighbourhood or district.",
        ("neighbourhood", "neighborhood", "district", "barrio", "colonia", "distrito"),
    ),
    Column(
        "signup_date",
        "date",
        "When the customer registered.",
        ("signup_date", "registration_date", "created_at", "fecha_alta", "alta", "fecha_registro"),
    ),
    Column(
        "acquisition_channel",
        "category",
        "How the customer was acquired.",
        ("acquisition_channel", "source", "canal_adquisicion", "origen", "canal_captacion"),
    ),
    Column(
        "income_band",
        "category",
        "Income band.",
        ("income_band", "income", "ingresos", "nivel_ingresos"),
    ),
    Column("occupation", "text", "Occupation.", ("occupation", "job", "profesion", "ocupacion")),
    Column(
        "tags",
        "tags",
        "Lifestyle / interest tags separated by commas or '|'.",
        ("tags", "interests", "lifestyle", "intereses", "estilo_de_vida", "etiquetas"),
    ),
    Column(
        "timezone",
        "text",
        "IANA time zone of the customer (e.g. America/Mexico_City).",
        ("timezone", "tz", "zona_horaria"),
    ),
)

_COMPANY = (
    Column(
        "company_id",
        "id",
        "Company (account) id for B2B contacts.",
        ("company_id", "account_id", "id_empresa", "id_cuenta"),
    ),
    Column(
        "company", "text", "Company name.", ("company", "company_name", "empresa", "razon_social")
    ),
    Column("industry", "category", "Industry or sector.", ("industry", "sector", "industria")),
    Column(
        "employees",
        "integer",
        "Number of employees of the company.",
        ("employees", "employee_count", "empleados", "num_empleados"),
    ),
    Column(
        "annual_revenue",
        "number",
        "Annual revenue of the company.",
        ("annual_revenue", "revenue", "facturacion", "facturacion_anual", "ingresos_anuales"),
    ),
)

CUSTOMERS = Table(
    "customers",
    "One row per customer: who they are, where they live, what they agreed to.",
    (
        Column(
            "customer_id",
            "id",
            "Customer id, as in the transactions.",
            (
                "customer_id",
                "customerid",
                "customer",
                "client_id",
                "id_cliente",
                "cliente",
                "codigo_cliente",
                "cod_cliente",
                "id",
            ),
        ),
        *_PERSON,
        *_COMPANY,
        *_CONSENT,
        Column(
            "consent_ads",
            "bool",
            "The customer agreed to be shown ads from their data (customer-match audiences); "
            "missing means no.",
            (
                "consent_ads",
                "consent_advertising",
                "ads_optin",
                "optin_ads",
                "consentimiento_publicidad",
                "consentimiento_ads",
                "acepta_publicidad",
                "permiso_publicidad",
            ),
        ),
    ),
    key=("customer_id",),
    required=(("customer_id",),),
)

TRANSACTIONS = Table(
    "transactions",
    "Invoice lines. Returns and cancellations are lines with a negative quantity.",
    (
        Column(
            "invoice_id",
            "id",
            "Invoice (order, ticket) id. Built from customer and day when missing.",
            (
                "invoice_id",
                "invoiceno",
                "invoice",
                "invoice_no",
                "order_id",
                "order",
                "factura",
                "num_factura",
                "numero_factura",
                "pedido",
                "id_pedido",
                "ticket",
            ),
        ),
        Column(
            "line",
            "integer",
            "Line number within the invoice. Numbered in file order when missing.",
            ("line", "line_no", "line_number", "linea", "num_linea"),
        ),
        Column(
            "customer_id",
            "id",
            "Customer id; empty for anonymous sales.",
            (
                "customer_id",
                "customerid",
                "customer",
                "client_id",
                "id_cliente",
                "cliente",
                "codigo_cliente",
                "cod_cliente",
            ),
        ),
        Column(
            "timestamp",
            "timestamp",
            "When the sale happened, in local wall-clock time (times written with an offset "
            "keep the time written; UTC times move to the business time zone).",
            (
                "timestamp",
                "invoicedate",
                "invoice_date",
                "date",
                "datetime",
                "order_date",
                "fecha",
                "fecha_factura",
                "fecha_hora",
                "fecha_pedido",
                "fecha_compra",
                "fecha_venta",
                "fecha_operacion",
                "fecha_ticket",
                "created_at",
                "paid_at",
                "order_datetime",
            ),
        ),
        Column(
            "product_id",
            "id",
            "Product (SKU) id.",
            (
                "product_id",
                "stockcode",
                "sku",
                "product",
                "item",
                "producto",
                "id_producto",
                "articulo",
                "referencia",
            ),
        ),
        Column(
            "product_name",
            "text",
            "Product description.",
            ("product_name", "description", "descripcion", "nombre_producto"),
        ),
        Column(
            "category",
            "text",
            "Product category (a path like 'Moda > Calzado' is fine).",
            ("category", "categoria", "familia", "department", "departamento"),
        ),
        Column(
            "quantity",
            "number",
            "Units; negative for returns. 1 when only a total is given.",
            ("quantity", "qty", "units", "cantidad", "unidades", "number_of_cds"),
        ),
        Column(
            "unit_price",
            "number",
            "Price per unit before discount.",
            ("unit_price", "unitprice", "price", "precio", "precio_unitario", "pvp"),
        ),
        Column(
            "discount",
            "number",
            "Discount amount on the line (0 when none).",
            ("discount", "descuento", "dto"),
        ),
        Column(
            "amount",
            "number",
            "Net amount of the line: quantity x unit price - discount.",
            (
                "amount",
                "total",
                "line_total",
                "importe",
                "importe_total",
                "total_linea",
                "dollar_value",
                "sales",
                "ventas",
                "monto",
            ),
        ),
        Column(
            "promo_code",
            "text",
            "Promotion or coupon code used.",
            (
                "promo_code",
                "coupon",
                "voucher",
                "promo",
                "cupon",
                "codigo_promocional",
                "promocion",
            ),
        ),
        Column(
            "sales_channel",
            "category",
            "store, web, app or phone.",
            ("sales_channel", "channel", "canal", "canal_venta"),
        ),
        Column(
            "device",
            "category",
            "desktop, mobile, tablet... for online sales.",
            ("device", "dispositivo"),
        ),
        Column(
            "store_id",
            "id",
            "Store where the sale happened.",
            ("store_id", "store", "tienda", "id_tienda"),
        ),
        Column(
            "original_invoice_id",
            "id",
            "For a return: the invoice it returns.",
            ("original_invoice_id", "original_invoice", "factura_original", "factura_rectificada"),
        ),
        Column(
            "line_type",
            "text",
            "Document or line type as exported; a return / devolución / abono / credit note / "
            "refund makes the line a return (negative quantity and amount).",
            (
                "line_type",
                "transaction_type",
                "document_type",
                "invoice_type",
                "tipo_documento",
                "tipo_factura",
                "tipo_operacion",
                "tipo_movimiento",
                "tipo_transaccion",
                "tipo_linea",
            ),
        ),
        Column(
            "currency",
            "category",
            "Currency of the line's amounts (ISO code: EUR, GBP, USD...), from a currency "
            "column, the signs in the amounts (€, £, $) or the currency setting.",
            ("currency", "currency_code", "moneda", "divisa", "cod_moneda", "codigo_moneda"),
        ),
    ),
    key=("invoice_id", "line"),
    required=(("timestamp",), ("amount", "unit_price")),
)

EVENTS = Table(
    "events",
    "Web and app activity, message opens and clicks.",
    (
        Column("event_id", "id", "Event id (optional).", ("event_id", "id_evento")),
        Column(
            "customer_id",
            "id",
            "Customer id when known.",
            ("customer_id", "customerid", "user_id", "id_cliente", "cliente", "usuario"),
        ),
        Column(
            "anonymous_id",
            "id",
            "Cookie / device id for visitors not yet identified.",
            ("anonymous_id", "cookie_id", "visitor_id", "session_id", "id_anonimo"),
        ),
        Column(
            "timestamp",
            "timestamp",
            "When it happened.",
            ("timestamp", "event_time", "time", "date", "fecha", "fecha_hora"),
        ),
        Column(
            "event_type",
            "category",
            "page_view, product_view, add_to_cart, cart_abandoned, checkout, email_open, email_click, push_open, push_click...",
            ("event_type", "event", "type", "evento", "tipo", "tipo_evento"),
        ),
        Column("device", "category", "Device.", ("device", "dispositivo")),
        Column("channel", "category", "web, app, email, push...", ("channel", "canal")),
        Column(
            "campaign_id",
            "id",
            "Campaign that caused it, for message events.",
            ("campaign_id", "campaign", "campana", "id_campana"),
        ),
        Column(
            "product_id",
            "id",
            "Product viewed or added.",
            ("product_id", "sku", "producto", "id_producto"),
        ),
    ),
    key=(),
    required=(("timestamp",), ("event_type",), ("customer_id", "anonymous_id")),
)

PRODUCTS = Table(
    "products",
    "The catalogue.",
    (
        Column(
            "product_id",
            "id",
            "Product id.",
            (
                "product_id",
                "stockcode",
                "sku",
                "id_producto",
                "producto",
                "referencia",
                "articulo",
                "id",
            ),
        ),
        Column(
            "name",
            "text",
            "Name.",
            ("name", "product_name", "description", "nombre", "descripcion"),
        ),
        Column(
            "category",
            "text",
            "Category path, levels separated by ' > '.",
            ("category", "category_path", "categoria", "familia"),
        ),
        Column("price", "number", "List price.", ("price", "unit_price", "precio", "pvp")),
    ),
    key=("product_id",),
    required=(("product_id",),),
)

PROSPECTS = Table(
    "prospects",
    "Leads: people or companies with the customer attributes and no purchases yet.",
    (
        Column(
            "prospect_id",
            "id",
            "Prospect (lead) id.",
            ("prospect_id", "lead_id", "id_lead", "id_prospecto", "id"),
        ),
        *_PERSON,
        *_COMPANY,
        *_CONSENT,
    ),
    key=("prospect_id",),
    required=(("prospect_id",),),
)

CAMPAIGN_RESULTS = Table(
    "campaign_results",
    "One row per campaign and customer: group, what was sent and what happened.",
    (
        Column(
            "campaign_id",
            "id",
            "Campaign id.",
            ("campaign_id", "campaign", "campana", "id_campana"),
        ),
        Column("customer_id", "id", "Customer id.", ("customer_id", "id_cliente", "cliente")),
        Column("group", "category", "treatment or control.", ("group", "grupo", "arm")),
        Column("channel", "category", "Channel used.", ("channel", "canal")),
        Column(
            "sent_at",
            "timestamp",
            "When it was sent.",
            ("sent_at", "send_time", "fecha_envio", "enviado"),
        ),
        Column("delivered", "bool", "Delivered.", ("delivered", "entregado")),
        Column("opened", "bool", "Opened.", ("opened", "abierto")),
        Column("clicked", "bool", "Clicked.", ("clicked", "clic", "click")),
        Column(
            "converted",
            "bool",
            "Bought within the attribution window.",
            ("converted", "convertido", "conversion"),
        ),
        Column("revenue", "number", "Revenue attributed.", ("revenue", "ingresos", "importe")),
        Column("cost", "number", "Cost of the contact.", ("cost", "coste", "costo")),
    ),
    key=("campaign_id", "customer_id"),
    required=(("campaign_id",), ("customer_id",), ("group",)),
)

RESPONSES = Table(
    "responses",
    "Survey answers and reviews: NPS, CSAT, effort, ratings and what the customer wrote.",
    (
        Column(
            "response_id",
            "id",
            "Response (review) id; optional.",
            ("response_id", "review_id", "survey_response_id", "id_respuesta", "id_resena"),
        ),
        Column(
            "customer_id",
            "id",
            "Customer id; empty for anonymous answers.",
            (
                "customer_id",
                "customerid",
                "client_id",
                "id_cliente",
                "cliente",
                "codigo_cliente",
                "user_id",
            ),
        ),
        Column(
            "timestamp",
            "timestamp",
            "When the answer was given (offsets handled as for sales).",
            (
                "timestamp",
                "date",
                "submitted_at",
                "responded_at",
                "created_at",
                "fecha",
                "fecha_respuesta",
                "fecha_encuesta",
                "fecha_hora",
            ),
        ),
        Column(
            "nps",
            "integer",
            "Likelihood to recommend, 0 to 10 (9-10 promoter, 7-8 passive, 0-6 detractor).",
            ("nps", "nps_score", "recommend", "likelihood_to_recommend", "recomendacion"),
        ),
        Column(
            "csat",
            "integer",
            "Satisfaction, 1 to 5 (4-5 satisfied).",
            ("csat", "csat_score", "satisfaction", "satisfaccion"),
        ),
        Column(
            "ces",
            "integer",
            "Customer effort, 1 (very easy) to 7 (very hard).",
            ("ces", "ces_score", "effort", "esfuerzo"),
        ),
        Column(
            "rating",
            "number",
            "Product or service rating, 1 to 5 stars.",
            ("rating", "stars", "product_rating", "valoracion", "estrellas", "puntuacion"),
        ),
        Column(
            "comment",
            "text",
            "What the customer wrote.",
            ("comment", "text", "review", "feedback", "comentario", "texto", "opinion", "resena"),
        ),
        Column(
            "channel",
            "category",
            "Where the answer came from: email, web, app, store, phone, review site...",
            ("channel", "source", "canal", "origen"),
        ),
        Column(
            "product_id",
            "id",
            "Product reviewed, when it is a product review.",
            ("product_id", "sku", "producto", "id_producto", "articulo"),
        ),
        Column(
            "order_id",
            "id",
            "Order (invoice) the answer is about.",
            ("order_id", "invoice_id", "pedido", "id_pedido", "factura", "num_factura"),
        ),
        Column(
            "campaign_id",
            "id",
            "Campaign that asked (a survey by web message), when any.",
            ("campaign_id", "campaign", "campana", "id_campana", "survey", "encuesta"),
        ),
        Column(
            "question",
            "text",
            "The question of a one-question survey, when not a score.",
            ("question", "pregunta"),
        ),
        Column(
            "answer",
            "text",
            "The option chosen in a one-question survey.",
            ("answer", "option", "respuesta", "opcion"),
        ),
    ),
    key=(),
    required=(("timestamp",), ("nps", "csat", "ces", "rating", "comment", "answer")),
)

SUPPRESSIONS = Table(
    "suppressions",
    "People who must not be contacted (unsubscribed, complained, legal hold), by id or email.",
    (
        Column("customer_id", "id", "Customer id.", ("customer_id", "id_cliente", "cliente")),
        Column(
            "email",
            "email",
            "Email address (when the id is not known).",
            ("email", "e_mail", "mail", "correo"),
        ),
        Column(
            "channel",
            "category",
            "Channel suppressed: all, email, sms, push, inapp or web (empty = all).",
            ("channel", "canal"),
        ),
        Column(
            "reason", "text", "Why (unsubscribed, bounced, complaint...).", ("reason", "motivo")
        ),
        Column(
            "added_at",
            "timestamp",
            "When the suppression started.",
            ("added_at", "date", "fecha", "fecha_baja"),
        ),
    ),
    key=(),
    required=(("customer_id", "email"),),
)

POPULATION = Table(
    "population",
    "The market beyond the customer base: people (or companies) per cell, as a census or a "
    "company register counts them. The dimension columns present define the cells "
    "(see docs/market.md).",
    (
        Column("country", "text", "Country.", ("country", "pais")),
        Column(
            "region",
            "text",
            "Region name or code, written as the customers table writes it.",
            ("region", "comunidad", "comunidad_autonoma", "ccaa", "region_code", "codigo_region"),
        ),
        Column(
            "state",
            "text",
            "State or province, name or code.",
            ("state", "province", "provincia", "estado", "departamento", "codigo_provincia"),
        ),
        Column(
            "city",
            "text",
            "City or municipality.",
            ("city", "town", "ciudad", "localidad", "municipio", "poblacion_nombre"),
        ),
        Column(
            "age_band",
            "text",
            "Age band such as 18-24, 25 a 34, 65+ or 65 y más.",
            ("age_band", "age_group", "age_range", "tramo_edad", "grupo_edad", "edad", "age"),
        ),
        Column(
            "gender",
            "gender",
            "female, male (normalised from F/M/H/mujer/hombre...); Total rows are left out.",
            ("gender", "sex", "sexo", "genero"),
        ),
        Column("industry", "category", "Industry or sector (B2B).", ("industry", "sector")),
        Column(
            "company_size",
            "text",
            "Company size band by employees, such as 1-9, 10-49, 250+ (B2B).",
            (
                "company_size",
                "size_band",
                "employee_band",
                "tamano_empresa",
                "tamano",
                "tramo_empleados",
                "estrato_asalariados",
            ),
        ),
        Column(
            "population",
            "number",
            "People (or companies) in the cell.",
            (
                "population",
                "people",
                "inhabitants",
                "count",
                "poblacion",
                "habitantes",
                "personas",
                "companies",
                "empresas",
                "num_empresas",
                "numero_empresas",
            ),
        ),
        Column(
            "market_size",
            "number",
            "Market size of the cell in money (demand potential), when known.",
            (
                "market_size",
                "market_value",
                "demand",
                "potential_spend",
                "tamano_mercado",
                "mercado",
                "demanda",
                "gasto_potencial",
            ),
        ),
        Column(
            "growth",
            "number",
            "Trend of the cell: growth per year as a share (0.03 = +3 %), when known.",
            ("growth", "trend", "crecimiento", "tendencia", "variacion", "evolucion"),
        ),
        Column(
            "period",
            "text",
            "Year or period of the counts; the market uses the latest.",
            ("period", "year", "periodo", "anio", "ano", "ejercicio"),
        ),
    ),
    key=(),
    required=(("population",),),
)

INGESTIBLE: dict[str, Table] = {
    t.name: t
    for t in (
        CUSTOMERS,
        TRANSACTIONS,
        EVENTS,
        PRODUCTS,
        PROSPECTS,
        CAMPAIGN_RESULTS,
        SUPPRESSIONS,
        RESPONSES,
        POPULATION,
    )
}

QUARANTINE = Table(
    "quarantine",
    "Every rejected row, with where it came from and why.",
    (
        Column("batch_id", "id", "Ingest batch."),
        Column("table_name", "id", "Target table."),
        Column("file", "text", "Source file."),
        Column("source_row", "integer", "Data row number in the file (1 = first data row)."),
        Column("column", "text", "First column at fault (canonical name)."),
        Column("value", "text", "The offending value as read."),
        Column("reason", "text", "Every reason the row was rejected, separated by '; '."),
        Column("raw", "text", "The whole row as read, as JSON."),
    ),
    ingestible=False,
    lineage=False,
)

INGEST_BATCHES = Table(
    "ingest_batches",
    "One row per ingested file: counts that always add up (read = accepted + quarantined).",
    (
        Column("batch_id", "id", "Batch id."),
        Column("table_name", "id", "Target table."),
        Column("file", "text", "Source file."),
        Column("sheet", "text", "Excel sheet, when the file is a workbook."),
        Column("file_sha256", "id", "Content hash: the same content is never loaded twice."),
        Column("loaded_at", "timestamp", "When the batch was committed (UTC)."),
        Column("rows_read", "integer", "Rows read from the file."),
        Column("accepted", "integer", "Rows written to the table."),
        Column("quarantined", "integer", "Rows written to quarantine."),
        Column("anonymous", "integer", "Accepted rows without a customer id."),
        Column("duplicates", "integer", "Exact duplicate rows found."),
        Column("already_loaded", "integer", "Rows whose key was already in the warehouse."),
    ),
    ingestible=False,
    lineage=False,
)

RETURN_LINKS = Table(
    "return_links",
    "Each return line linked to the purchase line it undoes (kept by ingest; see docs/ingest.md).",
    (
        Column("invoice_id", "id", "The return line's invoice."),
        Column("line", "integer", "The return line's line number."),
        Column("customer_id", "id", "Customer of both lines."),
        Column("original_invoice_id", "id", "The purchase's invoice."),
        Column("original_line", "integer", "The purchase's line number."),
        Column("original_day", "date", "Day of the purchase: the return nets against it."),
        Column(
            "match", "category", "How it was found: invoice, exact, quantity, partial, product."
        ),
        Column("quantity", "number", "Units returned (negative)."),
        Column("amount", "number", "Amount returned (negative)."),
        Column("invoice_cancelled", "bool", "The purchase's invoice nets to zero or less."),
        Column("batch_id", "id", "The ingest batch that last linked this customer's returns."),
    ),
    ingestible=False,
    lineage=False,
)

ALL_TABLES: dict[str, Table] = {
    **INGESTIBLE,
    "quarantine": QUARANTINE,
    "ingest_batches": INGEST_BATCHES,
    "return_links": RETURN_LINKS,
}


def to_markdown() -> str:
    """The data model as Markdown tables (kept in docs/data-model.md; a test checks they match)."""
    out: list[str] = []
    for t in ALL_TABLES.values():
        out.append(f"### `{t.name}`\n\n{t.doc}")
        if t.key:
            out.append(f"\nKey: {', '.join(f'`{k}`' for k in t.key)}.")
        if t.required:
            groups = [" or ".join(f"`{c}`" for c in g) for g in t.required]
            out.append(f" Required: {'; '.join(groups)}.")
        out.append("\n\n| column | type | meaning | also recognised as |\n|---|---|---|---|")
        for c in t.all_columns:
            syn = ", ".join(f"`{s}`" for s in c.synonyms if s != c.name)
            out.append(f"\n| `{c.name}` | {KIND_DTYPES[c.kind]} | {c.doc} | {syn} |")
        out.append("\n\n")
    return "".join(out).rstrip() + "\n"


if __name__ == "__main__":  # pragma: no cover
    print(to_markdown(), end="")
