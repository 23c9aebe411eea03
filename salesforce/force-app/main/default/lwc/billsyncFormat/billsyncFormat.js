// How billsync's figures read in the panels: amounts with their currency, ISO dates as written.

export function money(value, currency) {
    if (value === null || value === undefined || value === '') {
        return '—';
    }
    const number = Number(value);
    const text = number.toLocaleString('en-US', { minimumFractionDigits: 2, maximumFractionDigits: 2 });
    return currency ? `${text} ${currency}` : text;
}

export function signedMoney(value, currency) {
    if (value === null || value === undefined || value === '') {
        return '—';
    }
    return (Number(value) > 0 ? '+' : '') + money(value, currency);
}

// An exact decimal written as text ("1950.00", "-150"), grouped by thousands and kept to the
// digits billsync wrote; never through a binary number. Null when it is not a decimal.
export function decimalMoney(text, currency) {
    const match = typeof text === 'string' ? /^(-?)(\d+)(\.\d+)?$/.exec(text.trim()) : null;
    if (!match) {
        return null;
    }
    const grouped = match[2].replace(/\B(?=(\d{3})+(?!\d))/g, ',');
    const amount = `${match[1]}${grouped}${match[3] || ''}`;
    return currency ? `${amount} ${currency}` : amount;
}

export function day(value) {
    return value ? String(value).slice(0, 10) : '—';
}

// A record of getRecord / getRelatedListRecords: the value of one field, or null.
export function valueOf(record, field) {
    const found = record && record.fields ? record.fields[field] : undefined;
    return found === undefined || found === null ? null : found.value;
}

export const STATUS_WORDS = {
    active: 'Active',
    cancelling: 'Cancelling',
    past_due: 'Past due',
    cancelled: 'Cancelled',
    none: 'No subscription'
};
