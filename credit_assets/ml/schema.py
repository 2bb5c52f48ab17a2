"""Names shared by every stage: the source files, their columns, the grade and the feature lists."""

from __future__ import annotations

# The grade (label). Fixed and ordered: every probability frame, metric dict and JSONB key uses
# exactly these three, in this order, whatever a particular month or model happens to contain.
GRADE_SOURCE_COLUMN = "Credit_Mix"
GRADES: tuple[str, ...] = ("Bad", "Good", "Standard")
UNKNOWN_GRADE_MARKER = "_"  # in the raw data: customer has no grade; scored, never trained or evaluated on

# Source name -> file stem. The data directory holds `<stem>.csv` or `<stem>.csv.gz`.
SOURCE_FILES: dict[str, str] = {
    "attributes": "features_attributes",
    "financials": "features_financials",
    "clickstream": "feature_clickstream",
    "loan_daily": "lms_loan_daily",
}

CLICKSTREAM_COLUMNS: tuple[str, ...] = tuple(f"fe_{i}" for i in range(1, 21))

REQUIRED_COLUMNS: dict[str, tuple[str, ...]] = {
    "attributes": ("Customer_ID", "Name", "Age", "SSN", "Occupation", "snapshot_date"),
    "financials": (
        "Customer_ID",
        "Annual_Income",
        "Monthly_Inhand_Salary",
        "Num_Bank_Accounts",
        "Num_Credit_Card",
        "Interest_Rate",
        "Num_of_Loan",
        "Type_of_Loan",
        "Delay_from_due_date",
        "Num_of_Delayed_Payment",
        "Changed_Credit_Limit",
        "Num_Credit_Inquiries",
        "Credit_Mix",
        "Outstanding_Debt",
        "Credit_Utilization_Ratio",
        "Credit_History_Age",
        "Payment_of_Min_Amount",
        "Total_EMI_per_month",
        "Amount_invested_monthly",
        "Payment_Behaviour",
        "Monthly_Balance",
        "snapshot_date",
    ),
    "clickstream": (*CLICKSTREAM_COLUMNS, "Customer_ID", "snapshot_date"),
    "loan_daily": (
        "loan_id",
        "Customer_ID",
        "loan_start_date",
        "tenure",
        "installment_num",
        "loan_amt",
        "due_amt",
        "paid_amt",
        "overdue_amt",
        "balance",
        "snapshot_date",
    ),
}

# Never features, never written to any table.
PERSONAL_COLUMNS: tuple[str, ...] = ("Name", "SSN")

# Identity columns of the feature frame (one row per customer of a monthly cohort).
CUSTOMER_ID = "customer_id"
SNAPSHOT_DATE = "snapshot_date"
GRADE = "grade"  # one of GRADES, or None when unknown

LOAN_TYPES: tuple[str, ...] = (
    "Auto Loan",
    "Credit-Builder Loan",
    "Debt Consolidation Loan",
    "Home Equity Loan",
    "Mortgage Loan",
    "Not Specified",
    "Payday Loan",
    "Personal Loan",
    "Student Loan",
)
LOAN_TYPE_FEATURES: tuple[str, ...] = tuple(
    "loan_type_" + t.lower().replace(" ", "_").replace("-", "_") for t in LOAN_TYPES
)

NUMERIC_FEATURES: tuple[str, ...] = (
    "Age",
    "Annual_Income",
    "Monthly_Inhand_Salary",
    "Num_Bank_Accounts",
    "Num_Credit_Card",
    "Interest_Rate",
    "Num_of_Loan",
    "Delay_from_due_date",
    "Num_of_Delayed_Payment",
    "Changed_Credit_Limit",
    "Num_Credit_Inquiries",
    "Outstanding_Debt",
    "Credit_Utilization_Ratio",
    "Credit_History_Age",  # in months
    "Total_EMI_per_month",
    "Amount_invested_monthly",
    "Monthly_Balance",
    *LOAN_TYPE_FEATURES,
    *CLICKSTREAM_COLUMNS,
)
CATEGORICAL_FEATURES: tuple[str, ...] = ("Occupation", "Payment_of_Min_Amount", "Payment_Behaviour")
FEATURE_COLUMNS: tuple[str, ...] = (*NUMERIC_FEATURES, *CATEGORICAL_FEATURES)
