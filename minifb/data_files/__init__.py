"""The data shipped with minifb: the handwritten digits (``digits.csv.gz``, CC BY 4.0, see
``DIGITS_LICENSE.txt``) that :func:`minifb.data.load_digits` reads and ``minifb train`` trains on."""
