"""The day-end reports (admin): the day per doctor, the cash-up, the receivables."""
