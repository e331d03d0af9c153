"""Real header spellings from English and Spanish exports map to the right canonical column."""

from __future__ import annotations

import pytest

from segmentum.ingest.mapping import auto_map, header_words, looks_like_customer
from segmentum.schema import INGESTIBLE

# (header as exported, table, canonical column). Gathered from Online Retail I/II, CDNOW,
# Shopify / WooCommerce order exports and Spanish invoicing programs (A3, Holded, Sage,
# Factusol, Contasol) as users send them.
HEADERS: list[tuple[str, str, str]] = [
    # Online Retail I and II, CDNOW, typical English exports
    ("InvoiceNo", "transactions", "invoice_id"),
    ("Invoice", "transactions", "invoice_id"),
    ("Invoice No.", "transactions", "invoice_id"),
    ("Invoice Number", "transactions", "invoice_id"),
    ("Order ID", "transactions", "invoice_id"),
    ("Order Number", "transactions", "invoice_id"),
    ("StockCode", "transactions", "product_id"),
    ("Stock Code", "transactions", "product_id"),
    ("SKU", "transactions", "product_id"),
    ("Product Code", "transactions", "product_id"),
    ("Item Code", "transactions", "product_id"),
    ("Description", "transactions", "product_name"),
    ("Quantity", "transactions", "quantity"),
    ("Qty", "transactions", "quantity"),
    ("Units", "transactions", "quantity"),
    ("number_of_cds", "transactions", "quantity"),
    ("InvoiceDate", "transactions", "timestamp"),
    ("Invoice Date", "transactions", "timestamp"),
    ("Order Date", "transactions", "timestamp"),
    ("date", "transactions", "timestamp"),
    ("Price", "transactions", "unit_price"),
    ("UnitPrice", "transactions", "unit_price"),
    ("Unit Price", "transactions", "unit_price"),
    ("Customer ID", "transactions", "customer_id"),
    ("CustomerID", "transactions", "customer_id"),
    ("customer_id", "transactions", "customer_id"),
    ("Customer No.", "transactions", "customer_id"),
    ("customer_no", "transactions", "customer_id"),
    ("Customer Number", "transactions", "customer_id"),
    ("dollar_value", "transactions", "amount"),
    ("Line Total", "transactions", "amount"),
    ("Total (€)", "transactions", "amount"),
    ("Amount (EUR)", "transactions", "amount"),
    ("Discount", "transactions", "discount"),
    ("Coupon", "transactions", "promo_code"),
    ("Channel", "transactions", "sales_channel"),
    # Spanish invoicing programs and spreadsheets
    ("Nº factura", "transactions", "invoice_id"),
    ("N.º factura", "transactions", "invoice_id"),
    ("N.º Factura", "transactions", "invoice_id"),
    ("N° factura", "transactions", "invoice_id"),
    ("Núm. factura", "transactions", "invoice_id"),
    ("Num. Factura", "transactions", "invoice_id"),
    ("No. factura", "transactions", "invoice_id"),
    ("Nro. factura", "transactions", "invoice_id"),
    ("Número de factura", "transactions", "invoice_id"),
    ("Nº fra.", "transactions", "invoice_id"),
    ("Factura", "transactions", "invoice_id"),
    ("Nº pedido", "transactions", "invoice_id"),
    ("Número pedido", "transactions", "invoice_id"),
    ("Ticket", "transactions", "invoice_id"),
    ("Código producto", "transactions", "product_id"),
    ("Cód. producto", "transactions", "product_id"),
    ("Cód. artículo", "transactions", "product_id"),
    ("Código artículo", "transactions", "product_id"),
    ("Artículo", "transactions", "product_id"),
    ("Referencia", "transactions", "product_id"),
    ("Ref.", "transactions", "product_id"),
    ("Descripción", "transactions", "product_name"),
    ("Fecha factura", "transactions", "timestamp"),
    ("Fecha de factura", "transactions", "timestamp"),
    ("Fecha", "transactions", "timestamp"),
    ("Fecha/hora", "transactions", "timestamp"),
    ("F. factura", "transactions", "timestamp"),
    ("Fecha pedido", "transactions", "timestamp"),
    ("Importe", "transactions", "amount"),
    ("Importe total", "transactions", "amount"),
    ("Imp. total", "transactions", "amount"),
    ("Importe (€)", "transactions", "amount"),
    ("Total línea", "transactions", "amount"),
    ("Precio unitario", "transactions", "unit_price"),
    ("Precio unit.", "transactions", "unit_price"),
    ("Precio ud.", "transactions", "unit_price"),
    ("Precio", "transactions", "unit_price"),
    ("P.V.P.", "transactions", "unit_price"),
    ("Uds.", "transactions", "quantity"),
    ("Unidades", "transactions", "quantity"),
    ("Cant.", "transactions", "quantity"),
    ("Cantidad", "transactions", "quantity"),
    ("Dto.", "transactions", "discount"),
    ("Descuento", "transactions", "discount"),
    ("Nº cliente", "transactions", "customer_id"),
    ("N.º cliente", "transactions", "customer_id"),
    ("Núm. cliente", "transactions", "customer_id"),
    ("Id. cliente", "transactions", "customer_id"),
    ("ID Cliente", "transactions", "customer_id"),
    ("Cód. cliente", "transactions", "customer_id"),
    ("Código de cliente", "transactions", "customer_id"),
    ("cliente_num", "transactions", "customer_id"),
    ("Cliente", "transactions", "customer_id"),
    ("Canal de venta", "transactions", "sales_channel"),
    ("Cód. tienda", "transactions", "store_id"),
    ("Nº línea", "transactions", "line"),
    ("Factura rectificada", "transactions", "original_invoice_id"),
    ("Cupón", "transactions", "promo_code"),
    # Customers and products
    ("Nº cliente", "customers", "customer_id"),
    ("Código Cliente", "customers", "customer_id"),
    ("Correo electrónico", "customers", "email"),
    ("E-mail", "customers", "email"),
    ("Teléfono", "customers", "phone"),
    ("Móvil", "customers", "phone"),
    ("Fecha de nacimiento", "customers", "birth_date"),
    ("Fecha alta", "customers", "signup_date"),
    ("Código postal", "customers", "postal_code"),
    ("C.P.", "customers", "postal_code"),
    ("Población", "customers", "city"),
    ("País", "customers", "country"),
    ("Sexo", "customers", "gender"),
    ("Cód. artículo", "products", "product_id"),
    ("Descripción", "products", "name"),
    ("P.V.P.", "products", "price"),
    ("Familia", "products", "category"),
]


def test_the_table_holds_at_least_sixty_spellings() -> None:
    assert len(HEADERS) >= 60
    assert len({(h, t) for h, t, _ in HEADERS}) == len(HEADERS)


@pytest.mark.parametrize(("header", "table", "canonical"), HEADERS)
def test_a_real_header_maps_to_its_canonical_column(
    header: str, table: str, canonical: str
) -> None:
    mapping = auto_map([header], INGESTIBLE[table])
    assert mapping == {canonical: header}


def test_a_whole_spanish_invoice_export_maps_column_by_column() -> None:
    header = [
        "Nº factura",
        "Fecha factura",
        "Nº cliente",
        "Cód. artículo",
        "Descripción",
        "Uds.",
        "Precio unitario",
        "Dto. %",
        "Importe total",
        "Observaciones",
    ]
    mapping = auto_map(header, INGESTIBLE["transactions"])
    assert mapping == {
        "invoice_id": "Nº factura",
        "customer_id": "Nº cliente",
        "timestamp": "Fecha factura",
        "product_id": "Cód. artículo",
        "product_name": "Descripción",
        "quantity": "Uds.",
        "unit_price": "Precio unitario",
        "amount": "Importe total",
    }


def test_a_percentage_is_never_taken_for_an_amount() -> None:
    assert "discount" not in auto_map(["Dto. %"], INGESTIBLE["transactions"])
    assert header_words("Dto. %") == ["descuento", "pct"]


@pytest.mark.parametrize("header", ["Nº factura", "N.º factura", "Núm. factura", "N° Factura"])
def test_ordinal_signs_dots_and_accents_fold_to_one_word(header: str) -> None:
    assert header_words(header) == ["numero", "factura"]


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("socio", True),
        ("id_socio", True),
        ("Nº socio", True),
        ("cust", True),
        ("client", True),
        ("member_no", True),
        ("Usuario", True),
        ("Tarjeta fidelización", True),
        ("Custom label", False),
        ("Country", False),
        ("Cupón", False),
        ("Tienda", False),
    ],
)
def test_headers_that_may_hide_a_customer_id_are_spotted(header: str, expected: bool) -> None:
    assert looks_like_customer(header) is expected
