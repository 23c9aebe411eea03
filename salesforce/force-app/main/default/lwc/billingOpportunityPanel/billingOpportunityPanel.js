import { LightningElement, api, wire } from 'lwc';
import { getRecord } from 'lightning/uiRecordApi';
import { getRelatedListRecords } from 'lightning/uiRelatedListApi';
import { STATUS_WORDS, day, decimalMoney, money, signedMoney, valueOf } from 'c/billsyncFormat';

const FIELDS = [
    'Opportunity.IsClosed',
    'Opportunity.IsWon',
    'Opportunity.Type',
    'Opportunity.Billsync_Preview_Total__c',
    'Opportunity.Billsync_Preview_MRR__c',
    'Opportunity.Billsync_Preview_ARR__c',
    'Opportunity.Billsync_Preview_Note__c',
    'Opportunity.Billsync_Previewed_At__c',
    'Opportunity.Billsync_Subscription_Id__c',
    'Opportunity.Billsync_Subscription_Status__c',
    'Opportunity.Billsync_Subscription_Ends_On__c',
    'Opportunity.Billing_Review_Flag__c',
    'Opportunity.Billing_Review_Reason__c'
];
const OPTIONAL_FIELDS = ['Opportunity.CurrencyIsoCode', 'Opportunity.Billsync_Preview_Lines__c'];
const INVOICE_FIELDS = ['Invoice__c.Name', 'Invoice__c.Issue_Date__c', 'Invoice__c.Total__c', 'Invoice__c.CurrencyIsoCode'];
const LINE_FIELDS = ['Invoice_Line__c.Description__c', 'Invoice_Line__c.Explanation__c', 'Invoice_Line__c.Amount__c'];
const SORT_BY_ISSUE = ['Invoice__c.Issue_Date__c'];

export default class BillingOpportunityPanel extends LightningElement {
    @api recordId;

    deal;
    error;
    invoices = [];
    lines = [];

    @wire(getRecord, { recordId: '$recordId', fields: FIELDS, optionalFields: OPTIONAL_FIELDS })
    wiredDeal({ data, error }) {
        this.deal = data;
        this.error = error ? 'billsync cannot read this deal\'s billing fields: ask an admin for the billsync permission set.' : undefined;
    }

    // A won deal: its first invoice, with how each line was computed.
    @wire(getRelatedListRecords, {
        parentRecordId: '$recordId', relatedListId: 'Invoices__r', fields: INVOICE_FIELDS, sortBy: SORT_BY_ISSUE
    })
    wiredInvoices({ data }) {
        this.invoices = data ? data.records : [];
    }

    @wire(getRelatedListRecords, {
        parentRecordId: '$firstInvoiceId', relatedListId: 'Invoice_Lines__r', fields: LINE_FIELDS
    })
    wiredLines({ data }) {
        this.lines = data ? data.records : [];
    }

    get loaded() {
        return Boolean(this.deal);
    }

    get currency() {
        return valueOf(this.deal, 'CurrencyIsoCode');
    }

    get isOpen() {
        return this.loaded && !valueOf(this.deal, 'IsClosed');
    }

    get isWon() {
        return this.loaded && Boolean(valueOf(this.deal, 'IsWon'));
    }

    get isLost() {
        return this.loaded && !this.isOpen && !this.isWon;
    }

    get hasPreview() {
        return valueOf(this.deal, 'Billsync_Preview_Total__c') !== null;
    }

    get previewTotal() {
        return money(valueOf(this.deal, 'Billsync_Preview_Total__c'), this.currency);
    }

    get previewMrr() {
        return signedMoney(valueOf(this.deal, 'Billsync_Preview_MRR__c'), this.currency);
    }

    get previewArr() {
        return signedMoney(valueOf(this.deal, 'Billsync_Preview_ARR__c'), this.currency);
    }

    get previewNote() {
        return valueOf(this.deal, 'Billsync_Preview_Note__c')
            || 'billsync has not previewed this deal yet: it does within one sync of a change to its products.';
    }

    // An open deal's first invoice, line by line, as billsync wrote it in Billsync_Preview_Lines__c:
    // a JSON list of {description, quantity, amount, currency, explanation}, amounts as decimal
    // strings. A field that is not such a list shows no line and says so; a line without a
    // description or a decimal amount is left out and counted.
    get previewLines() {
        const text = valueOf(this.deal, 'Billsync_Preview_Lines__c');
        if (!this.hasPreview || !text) {
            return { rows: [], unreadable: 0, broken: false };
        }
        let entries;
        try {
            entries = JSON.parse(text);
        } catch (e) {
            return { rows: [], unreadable: 0, broken: true };
        }
        if (!Array.isArray(entries)) {
            return { rows: [], unreadable: 0, broken: true };
        }
        const rows = [];
        entries.forEach((entry, index) => {
            const valid = entry !== null && typeof entry === 'object';
            const currency = valid && typeof entry.currency === 'string' ? entry.currency : this.currency;
            const amount = valid ? decimalMoney(entry.amount, currency) : null;
            if (amount === null || typeof entry.description !== 'string' || !entry.description) {
                return;
            }
            rows.push({
                id: `line-${index}`,
                label: entry.description,
                amount,
                explanation: typeof entry.explanation === 'string' ? entry.explanation : ''
            });
        });
        return { rows, unreadable: entries.length - rows.length, broken: false };
    }

    get previewLineRows() {
        return this.previewLines.rows;
    }

    get hasPreviewLines() {
        return this.previewLines.rows.length > 0;
    }

    get previewLinesProblem() {
        const { unreadable, broken } = this.previewLines;
        if (broken) {
            return 'The lines of this preview cannot be read; the total, MRR and ARR above are complete.';
        }
        if (unreadable) {
            return unreadable === 1 ? '1 line of this preview cannot be shown.'
                : `${unreadable} lines of this preview cannot be shown.`;
        }
        return null;
    }

    get previewedAt() {
        const at = valueOf(this.deal, 'Billsync_Previewed_At__c');
        return at ? `as of ${String(at).replace('T', ' ').slice(0, 16)} UTC` : '';
    }

    get flagged() {
        return Boolean(valueOf(this.deal, 'Billing_Review_Flag__c'));
    }

    // The review flag in plain words: what billsync keeps doing and who settles it.
    get reviewText() {
        const reason = valueOf(this.deal, 'Billing_Review_Reason__c');
        const base = 'Finance must review this deal before billing changes.';
        return reason ? `${base} ${reason}` : base;
    }

    get subscriptionText() {
        const id = valueOf(this.deal, 'Billsync_Subscription_Id__c');
        if (!id) {
            return 'Not billed yet: billsync starts the subscription at its next sync.';
        }
        const status = valueOf(this.deal, 'Billsync_Subscription_Status__c');
        const ends = valueOf(this.deal, 'Billsync_Subscription_Ends_On__c');
        const words = status ? STATUS_WORDS[status] || status : 'Billed';
        return `${words}: subscription ${id}` + (ends ? `, last day billed ${day(ends)}` : '');
    }

    get firstInvoiceId() {
        return this.isWon && this.invoices.length ? this.invoices[0].id : undefined;
    }

    get firstInvoiceText() {
        const invoice = this.invoices[0];
        return invoice
            ? `First invoice ${valueOf(invoice, 'Name')} of ${day(valueOf(invoice, 'Issue_Date__c'))}: `
                + money(valueOf(invoice, 'Total__c'), valueOf(invoice, 'CurrencyIsoCode'))
            : null;
    }

    get lineRows() {
        return this.lines.map((r) => ({
            id: r.id,
            label: valueOf(r, 'Description__c'),
            amount: money(valueOf(r, 'Amount__c')),
            explanation: valueOf(r, 'Explanation__c')
        }));
    }
}
