import { LightningElement, api } from 'lwc';

// The subscription's "Amend" action: builds its Amendment deal.
export default class SubscriptionAmendAction extends LightningElement {
    @api recordId;
}
